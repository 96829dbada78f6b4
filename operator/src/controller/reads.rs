//! Reads of Tenants and RulePacks: from the shared watches' stores once synced, else the API.

use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use pd_engine::compile::PackSet;

use super::{Context, Error};
use crate::crd::{RulePack, Tenant};
use crate::shared::SyncedStore;

/// The stores a reconcile reads instead of the API server.
#[derive(Clone)]
pub struct Reads {
    pub tenants: SyncedStore<Tenant>,
    pub packs: SyncedStore<RulePack>,
}

/// The RulePacks visible from `namespace` by name: the shared namespace's (when configured)
/// overlaid by the namespace's own, so a local pack shadows a shared one of the same name.
pub(super) async fn visible_packs(
    ctx: &Context,
    namespace: &str,
    shared: Option<&str>,
) -> Result<PackSet, Error> {
    let client = &ctx.client;
    let mut packs = PackSet::new();
    let mut namespaces = Vec::with_capacity(2);
    if let Some(shared) = shared.filter(|s| *s != namespace) {
        namespaces.push(shared);
    }
    namespaces.push(namespace);
    if let Some(store) = ctx.reads.get().and_then(|r| r.packs.get()) {
        for ns in namespaces {
            packs.extend(
                store
                    .state()
                    .iter()
                    .filter(|p| p.namespace().as_deref() == Some(ns))
                    .map(|p| (p.name_any(), p.spec.0.clone())),
            );
        }
        return Ok(packs);
    }
    for ns in namespaces {
        let api: Api<RulePack> = Api::namespaced(client.clone(), ns);
        let list = api.list(&ListParams::default()).await?;
        packs.extend(list.items.into_iter().map(|p| (p.name_any(), p.spec.0)));
    }
    Ok(packs)
}

/// The Tenant `name`: from the shared store once synced, else one GET.
pub(super) async fn read_tenant(ctx: &Context, name: &str) -> Result<Option<Tenant>, Error> {
    if let Some(store) = ctx.reads.get().and_then(|r| r.tenants.get()) {
        return Ok(store.get(&ObjectRef::new(name)).map(|t| t.as_ref().clone()));
    }
    Ok(Api::<Tenant>::all(ctx.client.clone()).get_opt(name).await?)
}
