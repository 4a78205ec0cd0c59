//! Fuzz target `block`: see `asl_fuzz::block` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    asl_fuzz::block(data);
});
