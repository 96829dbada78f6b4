//! Prompt Defenders scanner library: the scan service ([`serve`]), the `--listen` forms the CLI
//! accepts ([`listen`]) and the fuzz harnesses. The detection engine itself is the `pd-engine`
//! crate; the `pd-scanner` binary is its CLI and HTTP front end.

// The engine's modules under the paths they had when they lived in this crate, so the service
// (`crate::compile`, `crate::engine`, ...) and the CLI (`pd_scanner::load`, ...) name them as
// before. New code may name `pd_engine` directly; both are the same items.
pub use pd_engine::{
    atoms, baseline, bundle, classifier, compile, crossval, decode, detectors, dfa_cache, engine,
    eval, gate, limits, load, normalize, pack, policy, prefilter, reach, redact, score, sources,
    synth, testing, verdict,
};

#[doc(hidden)]
pub mod fuzzing;
pub mod listen;
pub mod serve;
