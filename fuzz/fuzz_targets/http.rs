//! A request through the scan service's axum router (`pd_scanner::fuzzing::http` lists the
//! checks).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: pd_scanner::fuzzing::init_http(),
    |data: &[u8]| pd_scanner::fuzzing::http(data)
);
