//! The pd-e2e integration tests, one binary (`cargo test -p pd-e2e --test e2e`):
//!
//! - [`e2e`]: the kind suite `e2e/run.sh` runs with `PD_E2E=1`. The module is named so that a
//!   test's path is the `e2e::<name>` its `SKIPPED` line prints; select the suite alone with the
//!   filter `e2e::`.
//! - [`probe_script`]: the probe scripts run for real against a local scanner (no cluster).
//!
//! [`support`] holds what both use.

mod support;

mod e2e;
mod probe_script;
