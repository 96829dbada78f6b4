//! What the kind suite and the probe-script tests share: unwrapping a step with what it was
//! doing, reading a probe's JSON answer, the kind suite's common set-up ([`Setup`]) and a
//! local scanner run like a scanner pod ([`scanner`]).

use pd_e2e::ProbeOutput;
use serde_json::Value;

/// The operator tests' local scanner, started like a scanner pod: one copy for both crates.
#[path = "../../../../operator/tests/it/support/scanner.rs"]
pub mod scanner;
mod setup;

pub use setup::Setup;

/// Unwraps a step's result or fails the test with what was being done.
pub fn must<T>(r: pd_e2e::Result<T>, doing: &str) -> T {
    r.unwrap_or_else(|e| panic!("{doing}: {e}"))
}

/// The JSON body of response `tag`, which must have HTTP status `code`.
pub fn body_of(out: &ProbeOutput, tag: &str, code: u16) -> Value {
    let r = must(out.response(tag), "reading the probe output");
    assert_eq!(
        r.http_code, code,
        "`{tag}`: expected HTTP {code}, got {} (curl exit {}, {}) body: {}\nprobe log:\n{}",
        r.http_code, r.curl_exit, r.error, r.body, out.logs
    );
    must(r.json(), "parsing the response")
}
