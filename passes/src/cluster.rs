//! `cluster`: weight clustering. Replaces every Conv weight by the centroid of its cluster
//! from a deterministic 1-D k-means++ (seeded), either over all conv weights of the graph
//! (`full:K`) or per conv layer per kernel column (`slice:K`, design brief 1.5). With K
//! distinct values per slice, the lowering's masked taps need at most K plaintexts per mask
//! (the executor caches them), instead of one per (output, input, tap).
//!
//! Preconditions: run after the rewrite passes (BN folded, scale factors redistributed),
//! so the clustered values are the values the program multiplies by. Guarantees: every
//! slice holds at most K distinct weights, each the mean of the weights it replaced;
//! nothing else changes; the same seed gives the same result; a slice with at most K
//! distinct values is left exactly as it was. This changes the model's function (by the
//! quantisation error): measure accuracy on the clustered model.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::ir::{Graph, Op};
use crate::pass::{Change, PassError, PassReport};

/// Which weights share a codebook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One codebook for all conv weights.
    Full,
    /// One codebook per conv layer and kernel column.
    Slice,
}

/// `full:K` or `slice:K`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub scope: Scope,
    pub k: usize,
    pub seed: u64,
}

impl FromStr for ClusterSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (scope, k) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}': expected slice:K or full:K"))?;
        let scope = match scope {
            "full" => Scope::Full,
            "slice" => Scope::Slice,
            _ => return Err(format!("'{scope}': the scopes are 'slice' and 'full'")),
        };
        let k: usize = k
            .parse()
            .map_err(|_| format!("'{k}': K must be an integer"))?;
        if !(2..=1024).contains(&k) {
            return Err(format!("K = {k}: choose K in 2..=1024"));
        }
        Ok(ClusterSpec { scope, k, seed: 0 })
    }
}

/// SplitMix64: a small deterministic generator (k-means++ seeding needs no secrecy).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 1-D k-means++ (seeded) then Lloyd iterations to convergence. Returns the centroid of
/// each input value. Values with at most `k` distinct entries are returned unchanged.
pub fn kmeans_1d(values: &[f64], k: usize, seed: u64) -> Vec<f64> {
    let mut distinct: Vec<f64> = values.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() <= k || k == 0 {
        return values.to_vec();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut rng = SplitMix(seed ^ 0x5EED_0FC1_u64);
    // k-means++ seeding.
    let mut cent = vec![sorted[(rng.next_f64() * sorted.len() as f64) as usize % sorted.len()]];
    let mut d2: Vec<f64> = sorted.iter().map(|x| (x - cent[0]).powi(2)).collect();
    while cent.len() < k {
        let total: f64 = d2.iter().sum();
        if total <= 0.0 {
            break;
        }
        let mut r = rng.next_f64() * total;
        let mut pick = sorted.len() - 1;
        for (i, &d) in d2.iter().enumerate() {
            if r < d {
                pick = i;
                break;
            }
            r -= d;
        }
        let c = sorted[pick];
        cent.push(c);
        for (d, x) in d2.iter_mut().zip(&sorted) {
            *d = d.min((x - c).powi(2));
        }
    }
    cent.sort_by(f64::total_cmp);
    cent.dedup();
    // Lloyd on sorted data: clusters are contiguous runs between centroid midpoints.
    for _ in 0..100 {
        let mut sums = vec![0.0; cent.len()];
        let mut counts = vec![0usize; cent.len()];
        let mut j = 0;
        for &x in &sorted {
            while j + 1 < cent.len() && (x - cent[j + 1]).abs() < (x - cent[j]).abs() {
                j += 1;
            }
            sums[j] += x;
            counts[j] += 1;
        }
        let next: Vec<f64> = cent
            .iter()
            .zip(sums.iter().zip(&counts))
            .map(|(&c, (&s, &n))| if n > 0 { s / n as f64 } else { c })
            .collect();
        let moved = next.iter().zip(&cent).any(|(a, b)| a != b);
        cent = next;
        cent.sort_by(f64::total_cmp);
        if !moved {
            break;
        }
    }
    values
        .iter()
        .map(|&x| {
            let i = cent.partition_point(|&c| c < x);
            let cands = [i.saturating_sub(1), i.min(cent.len() - 1)];
            let best = cands
                .into_iter()
                .min_by(|&a, &b| (x - cent[a]).abs().total_cmp(&(x - cent[b]).abs()))
                .unwrap();
            cent[best]
        })
        .collect()
}

/// (conv index, flat index) of every weight in each codebook of `scope`, over the conv
/// nodes `convs` of `g` (one book for `Full`, one per layer and kernel column for `Slice`).
pub(crate) fn codebooks(
    g: &Graph,
    convs: &[crate::ir::NodeId],
    scope: Scope,
) -> BTreeMap<(usize, usize), Vec<(usize, usize)>> {
    let mut books: BTreeMap<(usize, usize), Vec<(usize, usize)>> = BTreeMap::new();
    for (ci, &id) in convs.iter().enumerate() {
        let Op::Conv(c) = &g.node(id).op else {
            continue;
        };
        let kw = c.weight.shape()[3];
        for flat in 0..c.weight.len() {
            let key = match scope {
                Scope::Full => (0, 0),
                Scope::Slice => (ci, flat % kw),
            };
            books.entry(key).or_default().push((ci, flat));
        }
    }
    books
}

/// Clusters the conv weights of `g` in place.
pub fn run(g: &mut Graph, spec: &ClusterSpec) -> Result<PassReport, PassError> {
    let convs: Vec<_> = g
        .node_ids()
        .into_iter()
        .filter(|&id| matches!(g.node(id).op, Op::Conv(_)))
        .collect();
    let mut report = PassReport {
        pass: "cluster".into(),
        ..Default::default()
    };
    let books = codebooks(g, &convs, spec.scope);
    let mut per_layer: BTreeMap<usize, usize> = BTreeMap::new();
    for (b, members) in books.values().enumerate() {
        let vals: Vec<f64> = members
            .iter()
            .map(|&(ci, flat)| match &g.node(convs[ci]).op {
                Op::Conv(c) => c.weight.data()[flat],
                _ => unreachable!(),
            })
            .collect();
        let out = kmeans_1d(&vals, spec.k, spec.seed.wrapping_add(b as u64));
        for (&(ci, flat), v) in members.iter().zip(out) {
            if let Op::Conv(c) = &mut g.node_mut(convs[ci]).op {
                c.weight.data_mut()[flat] = v;
            }
        }
    }
    for (ci, &id) in convs.iter().enumerate() {
        let Op::Conv(c) = &g.node(id).op else {
            unreachable!()
        };
        let mut d: Vec<f64> = c.weight.data().to_vec();
        d.sort_by(f64::total_cmp);
        d.dedup();
        per_layer.insert(ci, d.len());
        report.changes.push(Change {
            node: g.node(id).name.clone(),
            absorbed: vec![],
            what: format!(
                "{} distinct weights after {:?}:{}",
                d.len(),
                spec.scope,
                spec.k
            ),
            pays_level: false,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            "slice:16".parse::<ClusterSpec>().unwrap(),
            ClusterSpec {
                scope: Scope::Slice,
                k: 16,
                seed: 0
            }
        );
        assert!("slice:1".parse::<ClusterSpec>().is_err());
        assert!("rows:8".parse::<ClusterSpec>().is_err());
        assert!("full".parse::<ClusterSpec>().is_err());
    }

    #[test]
    fn two_obvious_clusters() {
        let v = [1.0, 1.1, 0.9, 5.0, 5.2, 4.8];
        let c = kmeans_1d(&v, 2, 7);
        assert!(
            (c[0] - 1.0).abs() < 1e-12 && (c[3] - 5.0).abs() < 1e-12,
            "{c:?}"
        );
    }

    proptest! {
        #[test]
        fn at_most_k_values_deterministic_and_close(
            v in proptest::collection::vec(-4.0f64..4.0, 1..300),
            k in 2usize..40,
            seed in 0u64..1000,
        ) {
            let a = kmeans_1d(&v, k, seed);
            let b = kmeans_1d(&v, k, seed);
            prop_assert_eq!(&a, &b);
            let mut d = a.clone();
            d.sort_by(f64::total_cmp);
            d.dedup();
            prop_assert!(d.len() <= k);
            // Each value maps to its nearest centroid: no value is farther from its
            // centroid than the range of the data.
            let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            for (x, c) in v.iter().zip(&a) {
                prop_assert!((x - c).abs() <= hi - lo + 1e-12);
                prop_assert!(*c >= lo - 1e-12 && *c <= hi + 1e-12);
            }
            // Few distinct values: unchanged.
            let mut u = v.clone();
            u.sort_by(f64::total_cmp);
            u.dedup();
            if u.len() <= k {
                prop_assert_eq!(&a, &v);
            }
        }
    }
}
