//! A pack file (any bytes, lossy UTF-8) loaded beside the sample packs, compiled, tested and
//! scanned with: never panics, and scans obey `pd_engine::fuzzing::check_scan`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: pd_engine::fuzzing::init_pack(),
    |data: &[u8]| pd_engine::fuzzing::pack(data)
);
