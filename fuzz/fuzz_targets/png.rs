//! Fuzz target `png`: arbitrary bytes through `compiler::fuzzing::png` (see there for
//! what is parsed and how the first byte selects the mode).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = compiler::fuzzing::png(data);
});
