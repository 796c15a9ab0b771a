//! Fuzz target `fheprog`: arbitrary bytes through `compiler::fuzzing::fheprog` (see there for
//! what is parsed and how the first byte selects the mode).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = compiler::fuzzing::fheprog(data);
});
