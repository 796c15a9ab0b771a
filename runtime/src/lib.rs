//! Leveled RNS-CKKS on tfhe-ntt, the `.fheprog` program format and its executor.
