//! The HomomorphicEncryption.org security table for ternary secrets (log2 of the largest
//! modulus QP per ring degree), extended to N = 2^16 and 2^17 with OpenFHE's figures.

/// Largest log2(QP) giving 128-bit classical security with a uniform ternary secret.
pub fn max_log_qp_128(log_n: u32) -> Option<u32> {
    match log_n {
        10 => Some(27),
        11 => Some(54),
        12 => Some(109),
        13 => Some(218),
        14 => Some(438),
        15 => Some(881),
        16 => Some(1747),
        17 => Some(3523),
        _ => None,
    }
}

/// The highest standard security level (128, 192 or 256 bits) that a modulus of
/// `log_qp` bits reaches at ring degree 2^log_n, or `None` below 128 bits. 192/256-bit
/// limits are the standard's, known up to N = 2^15.
pub fn security_level(log_n: u32, log_qp: f64) -> Option<u32> {
    let (l192, l256) = match log_n {
        10 => (19, 14),
        11 => (37, 29),
        12 => (75, 58),
        13 => (152, 118),
        14 => (305, 237),
        15 => (611, 476),
        _ => (0, 0),
    };
    let max128 = max_log_qp_128(log_n)? as f64;
    if log_qp <= l256 as f64 {
        Some(256)
    } else if log_qp <= l192 as f64 {
        Some(192)
    } else if log_qp <= max128 {
        Some(128)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_values() {
        assert_eq!(max_log_qp_128(15), Some(881));
        assert_eq!(security_level(15, 906.0), None);
        assert_eq!(security_level(15, 881.0), Some(128));
        assert_eq!(security_level(14, 200.0), Some(256));
        assert_eq!(max_log_qp_128(9), None);
    }
}
