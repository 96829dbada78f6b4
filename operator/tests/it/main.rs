//! The operator's integration tests, one binary (`cargo test -p pd-operator --test it`; a filter
//! picks a module, e.g. `--test it reconcile::`). One binary links kube and the operator once
//! instead of once per file, which is most of the build time and disk of the test suite.
//!
//! - [`reconcile`], [`leader`], [`usage`], [`apiserver`]: against the mocked API server
//!   ([`support::mock_api`]), asserting the exact requests;
//! - [`builders`], [`golden`], [`crds`], [`triggers`], [`shared`]: pure, from the samples and
//!   fixtures;
//! - [`cli`], [`scanner_pod`]: the real `pd-operator` and `pd-scanner` binaries.

mod support;

mod apiserver;
mod builders;
mod cli;
mod crds;
mod golden;
mod leader;
mod reconcile;
mod scanner_pod;
mod shared;
mod triggers;
mod usage;
