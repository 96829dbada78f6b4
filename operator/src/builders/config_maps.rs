//! The ConfigMaps of a policy: the bundle the scanners serve, and the usage ledger.

use super::*;

/// The `ScanBundle` the scanners serve: exactly the scanner's `bundle_document`, so the pods
/// load what `pd-scanner bundle` would print for the same inputs.
pub fn bundle(
    policy: &ScanPolicy,
    packs: &BTreeMap<String, RulePackSpec>,
) -> Result<serde_json::Value, BuildError> {
    let name = policy.name_any();
    let mut loaded = Loaded::default();
    let ns = policy.namespace().unwrap_or_default();
    for (pack, spec) in packs {
        loaded.packs.insert(
            pack.clone(),
            PackSource {
                name: pack.clone(),
                spec: spec.clone(),
                origin: Origin {
                    path: PathBuf::from(format!("rulepacks/{ns}/{pack}")),
                    document: 1,
                },
            },
        );
    }
    loaded.policies.push((
        Policy {
            name: name.clone(),
            tenant: Some(policy.spec.tenant_ref.name.clone()),
            spec: policy.spec.policy_spec(),
        },
        Origin {
            path: PathBuf::from(format!("scanpolicies/{ns}/{name}")),
            document: 1,
        },
    ));
    bundle_document(&loaded, Some(&name)).map_err(|source| BuildError::Bundle {
        policy: name,
        source,
    })
}

pub(super) fn config_map(
    policy: &ScanPolicy,
    tenant: &Tenant,
    names: &Names,
    owner: &Option<OwnerReference>,
    packs: &BTreeMap<String, RulePackSpec>,
) -> Result<(ConfigMap, String), BuildError> {
    let doc = bundle(policy, packs)?;
    let hash = doc["metadata"]["annotations"][BUNDLE_HASH_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let text = serde_json::to_string_pretty(&doc)?;
    let mut meta = meta(names, &names.bundle, owner);
    meta.annotations = Some(BTreeMap::from([(
        BUNDLE_HASH_ANNOTATION.to_string(),
        hash.clone(),
    )]));
    let mut data = BTreeMap::from([(BUNDLE_KEY.to_string(), text)]);
    if let Some(webhooks) = webhooks_file(tenant)? {
        data.insert(WEBHOOKS_KEY.to_string(), webhooks);
    }
    let cm = ConfigMap {
        metadata: meta,
        data: Some(data),
        ..ConfigMap::default()
    };
    Ok((cm, hash))
}

/// The usage ledger ConfigMap `<policy>-usage`: created empty and labelled here; the
/// scanners write their keys into it and pd-operator's usage aggregation its `quota.json`
/// (`crate::usage`, docs/src/usage.md). The operator creates it because RBAC cannot limit
/// `create` to one name, and a scanner allowed to create ConfigMaps could create any. This
/// apply never names a data key, so it never removes what the others wrote.
///
/// Owned by the Tenant, not the policy: deleting and recreating a ScanPolicy must not hand its
/// tenant a fresh month of quota, so the ledger (and the month's counts in it) outlives the
/// policy and goes with the tenant.
pub(super) fn usage_ledger(names: &Names, owner: &Option<OwnerReference>) -> ConfigMap {
    let mut meta = meta(names, &ledger_name(&names.policy), owner);
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(LEDGER_LABEL.to_string(), "true".to_string());
    }
    ConfigMap {
        metadata: meta,
        ..ConfigMap::default()
    }
}
