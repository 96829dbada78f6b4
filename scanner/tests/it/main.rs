//! The scanner's integration tests, one test binary (each binary links the whole service and
//! kube, so one binary instead of ten keeps the link time and the disk footprint down). Each
//! module was a test binary of its own; a test's name is its module path
//! (`cargo test -p pd-scanner --test it serve::scans_and_verdicts`).
//!
//! Most modules start the real `pd-scanner` binary on a loopback port ([`support::Server`]):
//! what only a process shows — signals, exit codes, logs, kill -9 durability. `in_process`
//! runs `serve::run` inside the test's own runtime ([`support::in_process`]).

mod support;

mod audit_retention;
mod cli;
mod fuzz_replay;
mod in_process;
mod serve;
mod serve_hardening;
mod serve_reload;
mod tls;
mod usage;
mod webhook;
