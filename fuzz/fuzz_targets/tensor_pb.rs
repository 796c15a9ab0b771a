//! Fuzz target `tensor_pb`: arbitrary bytes through `compiler::fuzzing::tensor_pb` (see there for
//! what is parsed and how the first byte selects the mode).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = compiler::fuzzing::tensor_pb(data);
});
