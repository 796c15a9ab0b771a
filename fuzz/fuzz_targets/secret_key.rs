//! Fuzz target `secret_key`: arbitrary bytes through `compiler::fuzzing::secret_key` (see there for
//! what is parsed and how the first byte selects the mode).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = compiler::fuzzing::secret_key(data);
});
