//! Fuzz target `segment`: see `asl_fuzz::segment` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    asl_fuzz::segment(data);
});
