//! Compiled parts shared by every bundle of a process that holds them unchanged.
//!
//! A reload compiles the whole bundle again, although usually one rule changed or none (a
//! ConfigMap touched, a version bumped). Compiling the rule regexes again was over half of that
//! work, and building each pattern set's prefilter most of the rest: together about 120 ms of
//! CPU and two million allocations per reload of the sample bundle, made while the serving
//! bundle is still alive. Both are immutable once built (a regex's caches are per thread), so
//! two bundles can use one safely: the new bundle takes the serving bundle's regex for every
//! unchanged pattern, with the lazy DFA states it has already built on the traffic so far, and
//! its prefilter for every pattern set whose patterns are all unchanged.
//!
//! A [`Shared`] holds weak references only: a part lives as long as some bundle uses it, and
//! one that no bundle holds any more is built afresh when it comes back. So sharing keeps no
//! memory of its own beyond a 32-byte key per entry, and needs no size limit. (The fully built
//! DFAs inside a prefilter are also kept by [`crate::dfa_cache`], which does hold them: building
//! one can take seconds, and a pattern set often comes back with one pattern changed.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use regex_automata::meta::Regex;
use sha2::{Digest as _, Sha256};

use crate::prefilter::Prefilter;

/// Span regexes, by pattern source and compiled size limit (together they decide the regex;
/// see `span_regex` in [`super::patterns`]).
pub(super) static REGEXES: Shared<Digest, Regex> = Shared::new();
/// Prefilters, by the pattern sources of their set, in order.
pub(super) static PREFILTERS: Shared<Digest, Prefilter> = Shared::new();

/// What an entry is kept under: the SHA-256 of what decides the part, not the sources
/// themselves. A dead entry stays until the next pruning, and a pattern set's sources can be
/// megabytes.
pub(super) type Digest = [u8; 32];

/// The key of a regex: its source and compiled size limit.
pub(super) fn regex_key(source: &str, size_limit: usize) -> Digest {
    digest([source.as_bytes(), &size_limit.to_le_bytes()])
}

/// The key of a prefilter: its set's pattern sources, in order.
pub(super) fn prefilter_key(sources: &[String]) -> Digest {
    digest(sources.iter().map(String::as_bytes))
}

/// Each part length-prefixed, so no two lists of parts hash the same bytes.
fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Parts of type `V` by key `K`, as long as some bundle holds them.
pub(super) struct Shared<K, V> {
    entries: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: BTreeMap<K, Weak<V>>,
    /// Entries past this make the next insert drop the dead ones first.
    prune_at: usize,
}

/// The fewest entries at which dead ones are dropped.
const PRUNE_FLOOR: usize = 256;

impl<K: Ord, V> Shared<K, V> {
    pub(super) const fn new() -> Self {
        Shared {
            entries: Mutex::new(Entries::new()),
        }
    }

    /// The part for `key`, shared with any live bundle that already has it; built by `build`
    /// otherwise. A failed build is not remembered (the error goes back to the caller each
    /// time, which names the rule).
    pub(super) fn get_or_build<E>(
        &self,
        key: K,
        build: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Some(live) = self.lock().map.get(&key).and_then(Weak::upgrade) {
            return Ok(live);
        }
        // Built outside the lock: compiling a large regex or a prefilter takes milliseconds,
        // and other threads (a pack test, the operator's status compile) should not queue
        // behind it.
        let built = Arc::new(build()?);
        let mut entries = self.lock();
        // Another thread may have built the same part meanwhile: keep one, so later bundles
        // share a single set of warm caches.
        if let Some(live) = entries.map.get(&key).and_then(Weak::upgrade) {
            return Ok(live);
        }
        entries.insert(key, &built);
        Ok(built)
    }

    /// A poisoned lock only means another thread panicked while holding it; every entry is
    /// inserted in one step, so the map is still whole.
    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Ord, V> Entries<K, V> {
    const fn new() -> Self {
        Entries {
            map: BTreeMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }

    /// Remembers `part`; past [`Entries::prune_at`] entries, first forgets the parts no bundle
    /// holds any more. The threshold doubles with the live entries, so pruning stays amortized
    /// constant per insert however many bundles are alive.
    fn insert(&mut self, key: K, part: &Arc<V>) {
        self.map.insert(key, Arc::downgrade(part));
        if self.map.len() > self.prune_at {
            self.map.retain(|_, w| w.strong_count() > 0);
            self.prune_at = (self.map.len() * 2).max(PRUNE_FLOOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_while_alive_and_rebuilds_after() {
        let shared: Shared<(String, usize), String> = Shared::new();
        let mut builds = 0;
        let mut get = |p: &str, limit: usize| {
            shared
                .get_or_build((p.to_string(), limit), || {
                    builds += 1;
                    Ok::<_, ()>(format!("{p}/{limit}"))
                })
                .unwrap()
        };
        let a = get("x", 1);
        let b = get("x", 1);
        assert!(Arc::ptr_eq(&a, &b), "one part while a bundle holds it");
        // Another key is another part.
        let c = get("x", 2);
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b, c));
        let d = get("x", 1);
        assert_eq!(*d, "x/1");
        assert_eq!(builds, 3, "nothing keeps a part no bundle holds");
    }

    #[test]
    fn errors_are_not_remembered() {
        let shared: Shared<String, Regex> = Shared::new();
        let p = "shared-test-(";
        let mut builds = 0;
        for _ in 0..2 {
            let r = shared.get_or_build(p.to_string(), || {
                builds += 1;
                Regex::new(p).map_err(Box::new)
            });
            assert!(r.is_err());
        }
        assert_eq!(builds, 2);
    }

    #[test]
    fn keys_tell_apart_what_decides_a_part() {
        assert_eq!(regex_key("a", 1), regex_key("a", 1));
        assert_ne!(regex_key("a", 1), regex_key("a", 2));
        assert_ne!(regex_key("a", 1), regex_key("b", 1));
        let set = |s: &[&str]| prefilter_key(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(set(&["ab", "c"]), set(&["ab", "c"]));
        // Where one pattern ends is part of the key, and so is the order.
        assert_ne!(set(&["ab", "c"]), set(&["a", "bc"]));
        assert_ne!(set(&["ab", "c"]), set(&["c", "ab"]));
        assert_ne!(set(&["ab"]), set(&["ab", ""]));
    }

    #[test]
    fn dead_entries_are_dropped() {
        let mut entries: Entries<usize, usize> = Entries::new();
        let held: Vec<_> = (0..10).map(Arc::new).collect();
        for (i, r) in held.iter().enumerate() {
            entries.insert(i, r);
        }
        // Past the floor, inserting drops the dead entries: only the ten held ones and those
        // inserted since the last pruning remain.
        for i in 10..PRUNE_FLOOR * 4 {
            entries.insert(i, &Arc::new(i));
            assert!(entries.map.len() <= PRUNE_FLOOR + 1);
        }
        for i in 0..10 {
            assert!(entries.map[&i].upgrade().is_some(), "a held part stays");
        }
        assert_eq!(
            entries.prune_at, PRUNE_FLOOR,
            "ten live entries keep the floor"
        );
    }
}
