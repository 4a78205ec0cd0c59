//! Fuzz target `log`: see `asl_fuzz::log` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    asl_fuzz::log(data);
});
