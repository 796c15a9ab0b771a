//! Cache-tiled accumulation of one input's rotated copies into every output of a `Linear`
//! whose masked taps all have sparse, blocked plaintexts (periodic masks: see
//! [`crate::math::sparse_ntt`]).
//!
//! The straightforward order (for each output, for each prime, the whole limb) streams all
//! rotated copies of the input from memory once per output: for a 64-channel layer at
//! N = 2^16 that is gigabytes per input and the multiply-accumulate becomes memory-bound.
//! Here each thread owns whole primes, first transforms the w * mask plaintexts of every
//! (output, tap) for its prime (small NTTs), then walks the slots in chunks small enough
//! that the rotated copies of a chunk stay in cache while every output consumes them.
//!
//! Precondition: every input reduced, primes below 2^50 (IFMA) or the scalar fallback.
//! Guarantee: `acc[o][part] += sum_t w(o, t) (x) rotated[t].parts[part]` exactly as the
//! untiled path computes it (same plaintexts, same modular sums).

use crate::ckks::plaintext::Ciphertext;
use crate::math::modulus::Modulus;
use crate::math::ntt::NttTable;
use crate::math::poly::RnsPoly;
use crate::math::simd;
use crate::math::sparse_ntt::SparseNtt;
use rayon::prelude::*;
use std::collections::HashMap;

/// Slots per chunk: 9 taps x 2 parts x 8 KiB of rotated input stay in L2.
const CHUNK: usize = 1024;

/// One tap of one output.
pub(crate) enum TapWeight {
    /// An integer scalar (no mask).
    Integer(i64),
    /// A masked tap: the rounded support of w * mask and its sparsity stride.
    Sparse { stride: usize, ints: Vec<i64> },
}

/// `weights[o]` lists (tap, weight) of output o (zero weights left out).
pub(crate) fn accumulate(
    acc: &mut [[RnsPoly; 2]],
    rotated: &[&Ciphertext],
    tables: &[&NttTable],
    weights: &[Vec<(usize, TapWeight)>],
    sparse_ntts: &HashMap<usize, std::sync::Arc<Vec<SparseNtt>>>,
) {
    let n = tables.first().map_or(0, |t| t.n());
    // Limb j of every (output, part), grouped by j so that threads own primes.
    let mut by_prime: Vec<Vec<&mut [u64]>> = (0..tables.len()).map(|_| vec![]).collect();
    for a in acc.iter_mut() {
        for part in a.iter_mut() {
            for (j, limb) in part.limbs_iter_mut().enumerate() {
                by_prime[j].push(limb);
            }
        }
    }
    by_prime.par_iter_mut().enumerate().for_each(|(j, limbs)| {
        accumulate_prime(j, limbs, rotated, tables[j], weights, sparse_ntts, n)
    });
}

#[allow(clippy::too_many_arguments)]
fn accumulate_prime(
    j: usize,
    limbs: &mut [&mut [u64]],
    rotated: &[&Ciphertext],
    table: &NttTable,
    weights: &[Vec<(usize, TapWeight)>],
    sparse_ntts: &HashMap<usize, std::sync::Arc<Vec<SparseNtt>>>,
    n: usize,
) {
    let m: &Modulus = table.modulus();
    let q = m.value();
    // Per output: integer taps (tap, c mod q) and masked taps (tap, stride, inner NTT).
    type Integers = Vec<(usize, u64)>;
    type Masked = (usize, usize, Vec<u64>);
    let prepared: Vec<(Integers, Vec<Masked>)> = weights
        .iter()
        .map(|taps| {
            let mut ints = vec![];
            let mut masked = vec![];
            for (t, w) in taps {
                match w {
                    TapWeight::Integer(k) => ints.push((*t, m.from_i64(*k))),
                    TapWeight::Sparse { stride, ints: v } => {
                        let mut r: Vec<u64> = v.iter().map(|&x| m.from_i64(x)).collect();
                        sparse_ntts[stride][j].forward_inner(&mut r);
                        masked.push((*t, *stride, r));
                    }
                }
            }
            (ints, masked)
        })
        .collect();
    // A multiple of every stride (all powers of two), so blocks never straddle chunks.
    let widest = prepared
        .iter()
        .flat_map(|(_, masked)| masked.iter().map(|x| x.1))
        .max()
        .unwrap_or(1);
    let chunk = CHUNK.max(widest).min(n);
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        for (o, (ints, masked)) in prepared.iter().enumerate() {
            for part in 0..2 {
                let acc = &mut limbs[2 * o + part][start..end];
                // Integer taps as one-value plaintexts, masked taps as block-constant ones:
                // one lazily reduced kernel call for all taps.
                let triples: Vec<(&[u64], &[u64], u32)> = ints
                    .iter()
                    .map(|(t, c)| {
                        (
                            &rotated[*t].parts[part].limb(j)[start..end],
                            std::slice::from_ref(c),
                            u32::MAX,
                        )
                    })
                    .chain(masked.iter().map(|(t, d, r)| {
                        (
                            &rotated[*t].parts[part].limb(j)[start..end],
                            &r[start / d..end / d],
                            d.trailing_zeros(),
                        )
                    }))
                    .collect();
                if !simd::smac(acc, &triples, q) {
                    for (x, y, shift) in triples {
                        for (i, (a, &xv)) in acc.iter_mut().zip(x.iter()).enumerate() {
                            let k = i.checked_shr(shift).unwrap_or(0);
                            *a = m.add(*a, m.mul(xv, y[k]));
                        }
                    }
                }
            }
        }
        start = end;
    }
}
