//! Fully built residual, gap-check and anchored DFAs, remembered across compilations in one
//! process.
//!
//! Determinizing the residual patterns is most of a bundle's compile time, and most of that is
//! spent on the patterns whose DFA turns out too large (a counted repetition found anywhere in
//! the text): the builder works up to the size limit before it gives up. A process compiles
//! the same patterns again and again — a scanner on every reload, the operator for every
//! RulePack status and pack test, `pd-scanner test` for each pack and then the bundle — so the
//! outcome of each build (the DFA, or "too large") is kept, keyed by the patterns and the size
//! limit (a gap check's or an anchored DFA's key names its kind of DFA first). Entries are
//! immutable and shared (`Arc`); the cache holds at most [`CACHE_BYTES`] of DFAs and forgets
//! the oldest first.

use std::sync::{Arc, Mutex};

use regex_automata::dfa::dense;

/// DFA bytes the cache may hold. The sample bundle's residual DFAs (about 1.9 MiB), gap checks
/// (4.2 MiB, [`crate::gaps`]) and anchored DFAs (8.0 MiB, [`crate::prefilter`]) fit, so a
/// reload of the same patterns builds none again. The DFAs of a live bundle are shared with
/// it, so this costs memory only for what no bundle uses any more.
const CACHE_BYTES: usize = 24 << 20;
/// Entries kept, counting "too large" outcomes (which hold no DFA).
const CACHE_ENTRIES: usize = 256;

pub type Dfa = dense::DFA<Vec<u32>>;

struct Entry {
    patterns: Vec<String>,
    limit: usize,
    dfa: Option<Arc<Dfa>>,
}

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The DFA of `patterns` under `limit`, built by `build` unless an earlier compilation in this
/// process already built (or failed to build) exactly this one.
pub fn get_or_build(
    patterns: &[&str],
    limit: usize,
    build: impl FnOnce() -> Option<Dfa>,
) -> Option<Arc<Dfa>> {
    let same = |e: &Entry| {
        e.limit == limit
            && e.patterns
                .iter()
                .map(String::as_str)
                .eq(patterns.iter().copied())
    };
    // A poisoned lock only means another thread panicked while holding it; the entries are
    // still whole (each is pushed in one step), so carry on with them.
    if let Some(hit) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|e| same(e))
    {
        return hit.dfa.clone();
    }
    let dfa = build().map(Arc::new);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if !cache.iter().any(same) {
        cache.push(Entry {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            limit,
            dfa: dfa.clone(),
        });
        let bytes = |c: &[Entry]| -> usize {
            c.iter()
                .filter_map(|e| e.dfa.as_ref())
                .map(|d| d.memory_usage())
                .sum()
        };
        while cache.len() > CACHE_ENTRIES || (cache.len() > 1 && bytes(&cache) > CACHE_BYTES) {
            cache.remove(0);
        }
    }
    dfa
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_per_patterns_and_limit() {
        let build = |p: &str| dense::DFA::new(p).ok();
        let mut calls = 0;
        let a = get_or_build(&["cache-test-[0-9]+"], 1 << 20, || {
            calls += 1;
            build("cache-test-[0-9]+")
        });
        let b = get_or_build(&["cache-test-[0-9]+"], 1 << 20, || {
            calls += 1;
            build("cache-test-[0-9]+")
        });
        assert_eq!(calls, 1);
        assert!(a.zip(b).is_some_and(|(a, b)| Arc::ptr_eq(&a, &b)));
        // A different limit is a different question; "too large" is remembered too.
        let none = get_or_build(&["cache-test-[0-9]+"], 1, || None);
        assert!(none.is_none());
        assert!(get_or_build(&["cache-test-[0-9]+"], 1, || build("x")).is_none());
    }
}
