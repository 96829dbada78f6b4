//! One watch per kind, shared: it feeds a store (what reconcilers read) and every trigger stream
//! (what starts reconciles), in that order.
//!
//! Why: a controller that maps events of kind A through a store fed by a *different* watch of
//! A can look the event's object up before that store has it (a pack just created or
//! deleted), and then misses the policy to reconcile until the next resync (issue 13, problem
//! 4). Here each event is applied to the one store before any subscriber sees it, so a mapper or
//! reconcile reading the store after an event sees at least that event's version.
//!
//! kube's own shared reflector (`reflect_shared`) does not pass deletions on to subscribers,
//! which the triggers need (a deleted pack must reach the policies that used it), hence this
//! small broadcast of whole watcher events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::watcher::{self, Event};
use kube::Resource;
use tokio::sync::broadcast;

/// Events a slow subscriber may fall behind by before it resynchronises from the store.
pub const BUFFER: usize = 1024;

/// A watch shared by a store and any number of subscribers.
pub struct SharedWatch<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: SyncedStore<K>,
    tx: broadcast::Sender<Event<K>>,
}

/// A store plus whether it has held a full list yet. Reconcilers read it only once it has
/// (before that, an empty store would look like "every pack was deleted"); until then they ask
/// the API server.
#[derive(Clone)]
pub struct SyncedStore<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    synced: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> SyncedStore<K> {
    /// A store that is already complete (tests, or a caller that filled it itself).
    pub fn synced(store: Store<K>) -> Self {
        SyncedStore {
            store,
            synced: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The store, once it has held a full list.
    pub fn get(&self) -> Option<&Store<K>> {
        self.synced.load(Ordering::Acquire).then_some(&self.store)
    }

    /// The store, complete or not (trigger mappers: an event's own object is laid over it).
    pub fn any(&self) -> &Store<K> {
        &self.store
    }
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// Wraps `events` (a watcher stream); returns the handle and the future that drives the
    /// watch, which the caller must run for as long as the controllers do. Watch errors are
    /// logged (the watcher retries them with its backoff).
    pub fn new(
        events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let mut writer: Writer<K> = reflector::store::Writer::default();
        let store = SyncedStore {
            store: writer.as_reader(),
            synced: Arc::new(AtomicBool::new(false)),
        };
        let synced = store.synced.clone();
        let (tx, _) = broadcast::channel(BUFFER);
        let sender = tx.clone();
        let drive = async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        // Store first, then the subscribers: see the module comment.
                        writer.apply_watcher_event(&event);
                        if matches!(event, Event::InitDone) {
                            synced.store(true, Ordering::Release);
                        }
                        let _ = sender.send(event);
                    }
                    Err(e) => {
                        tracing::warn!(kind = %K::kind(&()), error = %e, "watch error; retrying")
                    }
                }
            }
        };
        (SharedWatch { store, tx }, drive)
    }

    /// The store every event is applied to before it reaches a subscriber.
    pub fn store(&self) -> SyncedStore<K> {
        self.store.clone()
    }

    /// Every event from now on. A subscriber that falls more than [`BUFFER`] events behind
    /// gets a relist from the store (`Init`, one `InitApply` per object, `InitDone`) instead of
    /// the events it missed, so filters that track state (`triggers::SpecChanges`) stay right.
    pub fn subscribe(&self) -> impl Stream<Item = Event<K>> + Send + 'static {
        let rx = self.tx.subscribe();
        let store = self.store.store.clone();
        futures::stream::unfold(rx, move |mut rx| {
            let store = store.clone();
            async move {
                match rx.recv().await {
                    Ok(event) => Some((vec![event], rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(kind = %K::kind(&()), missed = n, "a subscriber fell behind; resynchronising it from the store");
                        let mut relist = vec![Event::Init];
                        relist.extend(
                            store
                                .state()
                                .iter()
                                .map(|o: &Arc<K>| Event::InitApply(o.as_ref().clone())),
                        );
                        relist.push(Event::InitDone);
                        Some((relist, rx))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            }
        })
        .flat_map(futures::stream::iter)
    }
}
