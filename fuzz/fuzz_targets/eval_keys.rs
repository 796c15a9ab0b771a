//! Fuzz target `eval_keys`: arbitrary bytes through `compiler::fuzzing::eval_keys` (see there for
//! what is parsed and how the first byte selects the mode).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = compiler::fuzzing::eval_keys(data);
});
