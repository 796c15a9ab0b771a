//! Versioned, checksummed serialisation of parameters, keys and ciphertexts.
