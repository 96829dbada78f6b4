//! A prompt through detectors, normalizer, decoders and a full scan of the sample bundle, with
//! and without the prefilter (`pd_engine::fuzzing::scan` lists the checks).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: pd_engine::fuzzing::init_scan(),
    |data: &[u8]| pd_engine::fuzzing::scan(data)
);
