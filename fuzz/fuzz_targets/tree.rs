//! Fuzz target `tree`: see `asl_fuzz::tree` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    asl_fuzz::tree(data);
});
