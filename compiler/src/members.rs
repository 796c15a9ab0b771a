//! Client side of an ensemble program (`OutputLayout::members` = M > 1): the decrypted
//! output holds the M members' outputs one after another; each member's rows are turned
//! into probabilities by a softmax over the last axis and the M results are averaged
//! (design brief 1.5). With M = 1 the output passes through unchanged.

/// Softmax of one row (max-shifted, so large logits do not overflow).
pub fn softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|&x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// The combined output of `members` members: the average over members of the row-wise
/// softmax of each member's share of `out` (`classes` values per row). Returns `out`
/// itself for one member.
pub fn combine(out: &[f64], members: usize, classes: usize) -> Vec<f64> {
    if members <= 1 || classes == 0 {
        return out.to_vec();
    }
    let share = out.len() / members;
    let mut avg = vec![0.0; share];
    for m in 0..members {
        let part = &out[m * share..(m + 1) * share];
        for (r, row) in part.chunks(classes).enumerate() {
            for (k, p) in softmax(row).into_iter().enumerate() {
                avg[r * classes + k] += p / members as f64;
            }
        }
    }
    avg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_member_passes_through() {
        assert_eq!(combine(&[1.0, 5.0, 2.0], 1, 3), vec![1.0, 5.0, 2.0]);
    }

    #[test]
    fn averages_member_probabilities() {
        // Member 0 is sure of class 0, member 1 of class 1 (slightly less): class 0 wins.
        let out = [20.0, 0.0, 0.0, 0.0, 10.0, 0.0];
        let p = combine(&out, 2, 3);
        assert_eq!(p.len(), 3);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[0] > p[1] && p[1] > p[2]);
        let s = softmax(&[10.0, 0.0, 0.0]);
        assert!((p[1] - s[0] / 2.0).abs() < 1e-8);
    }

    #[test]
    fn softmax_survives_huge_logits() {
        let s = softmax(&[1e6, 0.0]);
        assert!((s[0] - 1.0).abs() < 1e-12 && s[1] >= 0.0);
    }
}
