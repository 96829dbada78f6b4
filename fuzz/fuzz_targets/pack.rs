//! A pack file (any bytes, lossy UTF-8) loaded beside the sample packs, compiled, tested and
//! scanned with: never panics, and scans obey `pd_scanner::fuzzing::check_scan`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: pd_scanner::fuzzing::init_pack(),
    |data: &[u8]| pd_scanner::fuzzing::pack(data)
);
