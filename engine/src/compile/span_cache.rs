//! Span regexes shared by every bundle of a process that holds the same pattern.
//!
//! A reload compiles the whole bundle again, although usually one rule changed or none (a
//! ConfigMap touched, a version bumped). Compiling the rule regexes was over half of that work:
//! about 120 ms of CPU and two million allocations per reload of the sample bundle, made while
//! the serving bundle is still alive, so it also set the scanner's peak memory. A regex is
//! immutable and its caches are per thread, so two bundles can use one regex safely: the new
//! bundle takes the serving bundle's regex for every unchanged pattern, with the lazy DFA states
//! that regex has already built on the traffic so far.
//!
//! The cache holds weak references only: a regex lives as long as some bundle uses it, and
//! one that no bundle holds any more is compiled afresh when it comes back. So the cache never
//! keeps memory of its own beyond its keys, and it needs no size limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use regex_automata::meta::Regex;

/// Pattern source and compiled size limit: together they decide the regex (see
/// [`super::patterns`]'s `span_regex`).
type Key = (String, usize);

struct Cache {
    regexes: HashMap<Key, Weak<Regex>>,
    /// Entries past this make the next insert drop the dead ones first.
    prune_at: usize,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// The fewest entries at which dead ones are dropped.
const PRUNE_FLOOR: usize = 256;

/// The regex for `source` under `limit`, shared with any live bundle that already has it;
/// built by `build` otherwise. A failed build is not remembered (the error goes back to the
/// caller each time, which names the rule).
pub(super) fn get_or_build<E>(
    source: &str,
    limit: usize,
    build: impl FnOnce() -> Result<Regex, E>,
) -> Result<Arc<Regex>, E> {
    let key = (source.to_string(), limit);
    if let Some(live) = lock()
        .as_ref()
        .and_then(|c| c.regexes.get(&key))
        .and_then(Weak::upgrade)
    {
        return Ok(live);
    }
    // Built outside the lock: compiling a large regex takes milliseconds, and other threads
    // (a pack test, the operator's status compile) should not queue behind it.
    let built = Arc::new(build()?);
    let mut guard = lock();
    let cache = guard.get_or_insert_with(Cache::new);
    // Another thread may have built the same regex meanwhile: keep one, so later bundles
    // share a single set of warm caches.
    if let Some(live) = cache.regexes.get(&key).and_then(Weak::upgrade) {
        return Ok(live);
    }
    cache.insert(key, &built);
    Ok(built)
}

impl Cache {
    fn new() -> Cache {
        Cache {
            regexes: HashMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }

    /// Remembers `re`; past [`Cache::prune_at`] entries, first forgets the regexes no bundle
    /// holds any more. The threshold doubles with the live entries, so pruning stays amortized
    /// constant per insert however many bundles are alive.
    fn insert(&mut self, key: Key, re: &Arc<Regex>) {
        self.regexes.insert(key, Arc::downgrade(re));
        if self.regexes.len() > self.prune_at {
            self.regexes.retain(|_, w| w.strong_count() > 0);
            self.prune_at = (self.regexes.len() * 2).max(PRUNE_FLOOR);
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; every entry is
/// inserted in one step, so the map is still whole.
fn lock() -> std::sync::MutexGuard<'static, Option<Cache>> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Regex::new`, its error boxed as the engine's callers box it.
    fn new(p: &str) -> Result<Regex, Box<regex_automata::meta::BuildError>> {
        Regex::new(p).map_err(Box::new)
    }

    #[test]
    fn shares_while_alive_and_rebuilds_after() {
        let mut builds = 0;
        let mut build = |p: &str| {
            builds += 1;
            new(p)
        };
        let p = "span-cache-test-[0-9]+";
        let a = get_or_build(p, 1 << 20, || build(p)).unwrap();
        let b = get_or_build(p, 1 << 20, || build(p)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one regex while a bundle holds it");
        // Another limit is another regex.
        let c = get_or_build(p, 1 << 21, || build(p)).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b, c));
        let d = get_or_build(p, 1 << 20, || build(p)).unwrap();
        assert!(d.is_match(b"span-cache-test-7"));
        assert_eq!(builds, 3, "nothing keeps a regex no bundle holds");
    }

    #[test]
    fn errors_are_not_remembered() {
        let p = "span-cache-test-(";
        let mut builds = 0;
        for _ in 0..2 {
            let r = get_or_build(p, 1 << 20, || {
                builds += 1;
                new(p)
            });
            assert!(r.is_err());
        }
        assert_eq!(builds, 2);
    }

    #[test]
    fn dead_entries_are_dropped() {
        let mut cache = Cache::new();
        let re = |i: usize| Arc::new(Regex::new(&format!("prune-{i}")).unwrap());
        let key = |i: usize| (format!("prune-{i}"), 1 << 20);
        let held: Vec<_> = (0..10).map(re).collect();
        for (i, r) in held.iter().enumerate() {
            cache.insert(key(i), r);
        }
        // Past the floor, inserting drops the dead entries: only the ten held ones and those
        // inserted since the last pruning remain.
        for i in 10..PRUNE_FLOOR * 4 {
            cache.insert(key(i), &re(i));
            assert!(cache.regexes.len() <= PRUNE_FLOOR + 1);
        }
        for i in 0..10 {
            assert!(
                cache.regexes[&key(i)].upgrade().is_some(),
                "a held regex stays"
            );
        }
        assert_eq!(
            cache.prune_at, PRUNE_FLOOR,
            "ten live entries keep the floor"
        );
    }
}
