//! The shared watch (`pd_operator::shared`): the store holds an event's object before any
//! subscriber sees the event, and a subscriber that falls behind is resynchronised.

use futures::StreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use pd_operator::crd::RulePack;
use pd_operator::shared::{SharedWatch, BUFFER};

use crate::support::fixtures;

fn pack(name: &str) -> RulePack {
    fixtures::pack(name).generation(1).build()
}

/// Issue 13, problem 4: what a subscriber sees is already in the store.
#[tokio::test]
async fn the_store_is_updated_before_subscribers_see_an_event() {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let (watch, drive) = SharedWatch::new(rx.map(Ok));
    let store = watch.store();
    let mut sub = Box::pin(watch.subscribe());
    tokio::spawn(drive);
    assert!(store.get().is_none(), "not synced before the first list");
    for e in [Event::Init, Event::InitApply(pack("a")), Event::InitDone] {
        tx.unbounded_send(e).expect("send");
    }
    tx.unbounded_send(Event::Apply(pack("b"))).expect("send");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = sub.next().await.expect("event");
        if let Event::Apply(p) | Event::InitApply(p) = &event {
            // The object is visible to a mapper reading the store as soon as it arrives.
            let key = ObjectRef::from_obj(p);
            if matches!(event, Event::Apply(_)) {
                assert!(
                    store.any().get(&key).is_some(),
                    "{key} not in the store yet"
                );
            }
        }
        seen.push(event);
    }
    assert!(store.get().is_some(), "synced after InitDone");
    assert_eq!(store.any().state().len(), 2);
    // Deletions reach subscribers too (kube's shared reflector does not pass them on).
    tx.unbounded_send(Event::Delete(pack("b"))).expect("send");
    assert!(matches!(sub.next().await, Some(Event::Delete(_))));
    assert_eq!(store.any().state().len(), 1);
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_a_relist() {
    let mut events = vec![Event::Init, Event::InitApply(pack("a")), Event::InitDone];
    events.extend((0..BUFFER + 10).map(|_| Event::Apply(pack("a"))));
    let (watch, drive) = SharedWatch::new(futures::stream::iter(events).map(Ok));
    let mut sub = Box::pin(watch.subscribe());
    drive.await; // every event sent before the subscriber reads one
    let first: Vec<_> = sub.as_mut().take(3).collect().await;
    assert!(matches!(first[0], Event::Init), "{first:?}");
    assert!(matches!(first[1], Event::InitApply(_)));
    assert!(matches!(first[2], Event::InitDone));
}
