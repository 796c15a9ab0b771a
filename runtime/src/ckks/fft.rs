//! The canonical embedding of CKKS: the "special" FFT of size N/2 that maps a real
//! polynomial of degree < N to its values at the primitive 2N-th roots zeta^(5^j)
//! (j = 0..N/2), and its inverse.
//!
//! A polynomial m is packed as the N/2 complex numbers v_j = m_j + i m_(j+N/2); then
//! m(zeta^e) = sum_j v_j zeta^(e j) for every e = 1 mod 4, which is what the butterflies
//! below evaluate at e = 5^j. Slot j therefore rotates to slot j+k under X -> X^(5^k), and
//! to its complex conjugate under X -> X^(2N-1).

/// A complex number (the crate needs only these few operations).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct C64 {
    pub re: f64,
    pub im: f64,
}

impl C64 {
    pub const fn new(re: f64, im: f64) -> Self {
        C64 { re, im }
    }
    pub fn conj(self) -> C64 {
        C64::new(self.re, -self.im)
    }
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
}

impl std::ops::Add for C64 {
    type Output = C64;
    #[inline(always)]
    fn add(self, o: C64) -> C64 {
        C64::new(self.re + o.re, self.im + o.im)
    }
}

impl std::ops::Sub for C64 {
    type Output = C64;
    #[inline(always)]
    fn sub(self, o: C64) -> C64 {
        C64::new(self.re - o.re, self.im - o.im)
    }
}

impl std::ops::Mul for C64 {
    type Output = C64;
    #[inline(always)]
    fn mul(self, o: C64) -> C64 {
        C64::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}

/// Precomputed roots and rotation group for a ring degree N.
pub struct SpecialFft {
    slots: usize,
    /// roots[k] = exp(2 pi i k / 2N), k = 0..=2N.
    roots: Vec<C64>,
    /// rot_group[j] = 5^j mod 2N.
    rot_group: Vec<usize>,
}

fn bit_reverse<T>(v: &mut [T]) {
    let n = v.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            v.swap(i, j);
        }
    }
}

impl SpecialFft {
    pub fn new(n: usize) -> Self {
        let m = 2 * n;
        let roots = (0..=m)
            .map(|k| {
                let a = std::f64::consts::TAU * k as f64 / m as f64;
                C64::new(a.cos(), a.sin())
            })
            .collect();
        let mut rot_group = Vec::with_capacity(n / 2);
        let mut g = 1usize;
        for _ in 0..n / 2 {
            rot_group.push(g);
            g = g * 5 % m;
        }
        SpecialFft {
            slots: n / 2,
            roots,
            rot_group,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Packed coefficients -> slot values, in place.
    pub fn forward(&self, v: &mut [C64]) {
        let n = self.slots;
        let m = 4 * n;
        bit_reverse(v);
        let mut len = 2;
        while len <= n {
            let (lenh, lenq) = (len / 2, len * 4);
            let gap = m / lenq;
            for i in (0..n).step_by(len) {
                for j in 0..lenh {
                    let w = self.roots[(self.rot_group[j] % lenq) * gap];
                    let u = v[i + j];
                    let t = v[i + j + lenh] * w;
                    v[i + j] = u + t;
                    v[i + j + lenh] = u - t;
                }
            }
            len *= 2;
        }
    }

    /// Slot values -> packed coefficients, in place (inverse of [`Self::forward`]).
    pub fn inverse(&self, v: &mut [C64]) {
        let n = self.slots;
        let m = 4 * n;
        let mut len = n;
        while len >= 2 {
            let (lenh, lenq) = (len / 2, len * 4);
            let gap = m / lenq;
            for i in (0..n).step_by(len) {
                for j in 0..lenh {
                    let w = self.roots[(lenq - self.rot_group[j] % lenq) * gap];
                    let a = v[i + j];
                    let b = v[i + j + lenh];
                    v[i + j] = a + b;
                    v[i + j + lenh] = (a - b) * w;
                }
            }
            len /= 2;
        }
        let inv = 1.0 / n as f64;
        for x in v.iter_mut() {
            *x = C64::new(x.re * inv, x.im * inv);
        }
        bit_reverse(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_evaluates_at_the_rotation_group_roots() {
        let n = 32;
        let fft = SpecialFft::new(n);
        let coeffs: Vec<f64> = (0..n).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
        let mut v: Vec<C64> = (0..n / 2)
            .map(|j| C64::new(coeffs[j], coeffs[j + n / 2]))
            .collect();
        fft.forward(&mut v);
        for (j, got) in v.iter().enumerate() {
            let e = fft.rot_group[j];
            let mut want = C64::default();
            for (k, &c) in coeffs.iter().enumerate() {
                let a = std::f64::consts::PI * (e * k) as f64 / n as f64;
                want = want + C64::new(c * a.cos(), c * a.sin());
            }
            assert!((*got - want).abs() < 1e-9, "slot {j}: {got:?} vs {want:?}");
        }
        let mut back = v.clone();
        fft.inverse(&mut back);
        for j in 0..n / 2 {
            assert!((back[j].re - coeffs[j]).abs() < 1e-9);
            assert!((back[j].im - coeffs[j + n / 2]).abs() < 1e-9);
        }
    }
}
