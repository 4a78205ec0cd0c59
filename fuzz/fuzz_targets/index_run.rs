//! Fuzz target `index_run`: see `asl_fuzz::index_run` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    asl_fuzz::index_run(data);
});
