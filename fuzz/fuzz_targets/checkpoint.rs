//! Fuzz target `checkpoint`: see `asl_fuzz::checkpoint` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    asl_fuzz::checkpoint(data);
});
