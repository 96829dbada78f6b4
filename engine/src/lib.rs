//! Prompt Defenders detection engine: the rule-pack format, its compiler, the scan itself and
//! scoring. The `pd-scanner` binary (CLI and scan service) and the operator are both built on
//! it, so a pack is validated, tested and run by exactly the same code everywhere. It holds no
//! async runtime, HTTP or Kubernetes client: those live in the crates that serve and deploy it.
//!
//! Flow: [`sources`] reads files within [`limits`] → [`load`] parses them →
//! [`compile::compile`] packs + [`policy::Policy`] into a [`compile::CompiledPack`] →
//! [`compile::CompiledPack::scan`] a prompt into an [`engine::ScanResult`].

pub mod atoms;
pub mod baseline;
pub mod bundle;
pub mod byte_run;
pub mod classifier;
pub mod compile;
pub mod crossval;
pub mod decode;
pub mod detectors;
pub mod dfa_cache;
pub mod dfa_walk;
pub mod engine;
pub mod eval;
pub mod fuzzing;
pub mod gaps;
pub mod gate;
pub mod limits;
pub mod literals;
pub mod load;
pub mod normalize;
pub mod pack;
pub mod policy;
pub mod prefilter;
pub mod reach;
pub mod redact;
pub mod score;
pub mod short_span;
pub mod sources;
pub mod synth;
pub mod testing;
pub mod usage;
pub mod verdict;
