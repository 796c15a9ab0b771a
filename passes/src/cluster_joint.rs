//! `cluster_joint`: joint weight clustering of the M members of an ensemble (design brief
//! 1.5). Corresponding conv weights of the members (same layer in topological order, same
//! flat index) form one point in R^M; a seeded k-means++ in R^M over each codebook (all
//! conv weights for `full:K`, one conv layer's kernel column for `slice:K`) replaces every
//! point by its centroid. In the ensemble program member m's taps then share at most K
//! distinct weights per codebook, and they are shared *jointly*: where two inputs share a
//! value in one member they share it in all.
//!
//! Preconditions: run after the rewrite passes on graphs of one architecture (the same
//! conv layers, in topological order, with the same weight shapes). Guarantees: every
//! codebook holds at most K distinct M-vectors, each the mean of the points it replaced;
//! nothing else changes; the same seed gives the same result. This changes the models' functions (by the
//! quantisation error): measure accuracy on the clustered ensemble.

use crate::cluster::{ClusterSpec, SplitMix as Rng};
use crate::ir::{Graph, NodeId, Op};
use crate::pass::{Change, PassError, PassReport};

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++ (seeded) then Lloyd iterations (at most 100) over `points` (each of dimension
/// `dim`, stored one after another). Returns the centroid of each point. Point sets with
/// at most `k` distinct points are returned unchanged.
pub fn kmeans(points: &[f64], dim: usize, k: usize, seed: u64) -> Vec<f64> {
    let n = points.len() / dim.max(1);
    let pt = |i: usize| &points[i * dim..(i + 1) * dim];
    let mut distinct: Vec<&[f64]> = (0..n).map(pt).collect();
    distinct.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    distinct.dedup();
    if distinct.len() <= k || k == 0 || dim == 0 {
        return points.to_vec();
    }
    let mut rng = Rng(seed ^ 0x5EED_0FC1_u64);
    let mut cent: Vec<Vec<f64>> = vec![pt((rng.next_f64() * n as f64) as usize % n).to_vec()];
    let mut d2: Vec<f64> = (0..n).map(|i| dist2(pt(i), &cent[0])).collect();
    while cent.len() < k {
        let total: f64 = d2.iter().sum();
        if total <= 0.0 {
            break;
        }
        let mut r = rng.next_f64() * total;
        let mut pick = n - 1;
        for (i, &d) in d2.iter().enumerate() {
            if r < d {
                pick = i;
                break;
            }
            r -= d;
        }
        let c = pt(pick).to_vec();
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(dist2(pt(i), &c));
        }
        cent.push(c);
    }
    let nearest = |cent: &[Vec<f64>], p: &[f64]| {
        (0..cent.len())
            .min_by(|&a, &b| dist2(p, &cent[a]).total_cmp(&dist2(p, &cent[b])))
            .unwrap_or(0)
    };
    let mut assign: Vec<usize> = (0..n).map(|i| nearest(&cent, pt(i))).collect();
    for _ in 0..100 {
        let mut sums = vec![vec![0.0; dim]; cent.len()];
        let mut counts = vec![0usize; cent.len()];
        for (i, &a) in assign.iter().enumerate() {
            for (s, x) in sums[a].iter_mut().zip(pt(i)) {
                *s += x;
            }
            counts[a] += 1;
        }
        for ((c, s), &m) in cent.iter_mut().zip(&sums).zip(&counts) {
            if m > 0 {
                *c = s.iter().map(|x| x / m as f64).collect();
            }
        }
        let next: Vec<usize> = (0..n).map(|i| nearest(&cent, pt(i))).collect();
        if next == assign {
            break;
        }
        assign = next;
    }
    assign.iter().flat_map(|&a| cent[a].clone()).collect()
}

/// The conv nodes of `g` in topological order.
fn convs(g: &Graph) -> Result<Vec<NodeId>, PassError> {
    Ok(g.topo_order()?
        .into_iter()
        .filter(|&id| matches!(g.node(id).op, Op::Conv(_)))
        .collect())
}

fn weights(g: &Graph, id: NodeId) -> &[f64] {
    match &g.node(id).op {
        Op::Conv(c) => c.weight.data(),
        _ => &[],
    }
}

/// Clusters the conv weights of the members `gs` jointly, in place; one report per member.
pub fn run(gs: &mut [Graph], spec: &ClusterSpec) -> Result<Vec<PassReport>, PassError> {
    let m = gs.len();
    let layers: Vec<Vec<NodeId>> = gs.iter().map(convs).collect::<Result<_, _>>()?;
    let Some(first) = layers.first() else {
        return Ok(vec![]);
    };
    for (j, l) in layers.iter().enumerate() {
        let same = l.len() == first.len()
            && l.iter()
                .zip(first)
                .all(|(&a, &b)| match (&gs[j].node(a).op, &gs[0].node(b).op) {
                    (Op::Conv(x), Op::Conv(y)) => x.weight.shape() == y.weight.shape(),
                    _ => false,
                });
        if !same {
            return Err(PassError::Node {
                node: format!("member {j}"),
                msg: "joint clustering: its conv layers differ from member 0's (an ensemble \
                      needs models of one architecture)"
                    .into(),
            });
        }
    }
    let books = crate::cluster::codebooks(&gs[0], first, spec.scope);
    for (b, entries) in books.values().enumerate() {
        let mut pts = Vec::with_capacity(entries.len() * m);
        for &(ci, flat) in entries {
            for (j, g) in gs.iter().enumerate() {
                pts.push(weights(g, layers[j][ci])[flat]);
            }
        }
        let out = kmeans(&pts, m, spec.k, spec.seed.wrapping_add(b as u64));
        for (e, &(ci, flat)) in entries.iter().enumerate() {
            for (j, g) in gs.iter_mut().enumerate() {
                if let Op::Conv(c) = &mut g.node_mut(layers[j][ci]).op {
                    c.weight.data_mut()[flat] = out[e * m + j];
                }
            }
        }
    }
    let mut reports = vec![];
    for (j, g) in gs.iter().enumerate() {
        let mut report = PassReport {
            pass: "cluster_joint".into(),
            ..Default::default()
        };
        for &id in &layers[j] {
            let mut d: Vec<f64> = weights(g, id).to_vec();
            d.sort_by(f64::total_cmp);
            d.dedup();
            report.changes.push(Change {
                node: g.node(id).name.clone(),
                absorbed: vec![],
                what: format!(
                    "{} distinct weights after joint {:?}:{} over {m} members",
                    d.len(),
                    spec.scope,
                    spec.k
                ),
                pays_level: false,
            });
        }
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn separated_groups_are_found() {
        // Two tight groups in R^2: k = 2 puts each point on its group's mean.
        let pts = [0.0, 0.0, 0.1, 0.1, 10.0, 10.0, 10.2, 9.8];
        let c = kmeans(&pts, 2, 2, 7);
        assert_eq!(&c[0..2], &[0.05, 0.05]);
        assert_eq!(&c[2..4], &c[0..2]);
        assert!((c[4] - 10.1).abs() < 1e-12 && (c[5] - 9.9).abs() < 1e-12);
        assert_eq!(&c[6..8], &c[4..6]);
    }

    proptest! {
        #[test]
        fn at_most_k_centroids_each_a_mean(
            vals in proptest::collection::vec(-1.0f64..1.0, 6..60),
            k in 1usize..6,
            seed in 0u64..1000,
        ) {
            let dim = 3;
            let n = vals.len() / dim;
            let pts = &vals[..n * dim];
            let out = kmeans(pts, dim, k, seed);
            prop_assert_eq!(out.len(), pts.len());
            let mut cents: Vec<&[f64]> = out.chunks(dim).collect();
            cents.sort_by(|a, b| a.partial_cmp(b).unwrap());
            cents.dedup();
            prop_assert!(cents.len() <= k.max(1) || cents.len() == n);
            // Deterministic.
            prop_assert_eq!(kmeans(pts, dim, k, seed), out.clone());
            // Each centroid is the mean of the points assigned to it.
            for c in cents {
                let mine: Vec<&[f64]> = pts
                    .chunks(dim)
                    .zip(out.chunks(dim))
                    .filter(|(_, o)| *o == c)
                    .map(|(p, _)| p)
                    .collect();
                for d in 0..dim {
                    let mean = mine.iter().map(|p| p[d]).sum::<f64>() / mine.len() as f64;
                    prop_assert!((mean - c[d]).abs() < 1e-9);
                }
            }
        }
    }
}
