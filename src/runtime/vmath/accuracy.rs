//! Accuracy tests: maximum ulp error against a reference over dense samples,
//! for every backend this CPU can run. The bounds asserted here are the ones
//! documented in the crate-level table. Debug builds use a 64x sparser sample.
//! Run `cargo test --release -- --nocapture accuracy` to see the measurements.

use super::dispatch::{portable, Op};

/// Sample count divisor: debug builds are ~50x slower.
fn sparse() -> usize {
    if cfg!(debug_assertions) {
        64
    } else {
        1
    }
}

/// Points spread evenly over the bit patterns of [lo, hi] (0 <= lo < hi),
/// i.e. roughly log-uniformly, so tiny magnitudes are covered too.
fn bits32(lo: f32, hi: f32, n: usize, out: &mut Vec<f32>) {
    let (a, b) = (lo.to_bits() as u64, hi.to_bits() as u64);
    let n = (n / sparse()).max(2) as u64;
    let step = ((b - a) / n).max(1);
    let mut i = a;
    while i <= b {
        out.push(f32::from_bits(i as u32));
        i += step;
    }
    out.push(hi);
}

fn bits64(lo: f64, hi: f64, n: usize, out: &mut Vec<f64>) {
    let (a, b) = (lo.to_bits(), hi.to_bits());
    let n = (n / sparse()).max(2) as u64;
    let step = ((b - a) / n).max(1);
    let mut i = a;
    while i <= b {
        out.push(f64::from_bits(i));
        i += step;
    }
    out.push(hi);
}

/// Evenly spaced points on [lo, hi].
fn lin(lo: f64, hi: f64, n: usize) -> impl Iterator<Item = f64> {
    let n = (n / sparse()).max(2);
    (0..=n).map(move |i| lo + (hi - lo) * (i as f64 / n as f64))
}

/// Adds the negatives of every point.
fn mirror<T: Copy + core::ops::Neg<Output = T>>(v: &mut Vec<T>) {
    let m: Vec<T> = v.iter().map(|&x| -x).collect();
    v.extend(m);
}

const NB: usize = 4_000_000; // bit-pattern samples per range
const NL: usize = 2_000_000; // linear samples per range

/// Error of `got` in ulps of the exact value `want` (f32 ulp, with the
/// subnormal ulp 2^-149 at the bottom; +-inf counts as +-2^128).
fn ulp_err32(got: f32, want: f64) -> f64 {
    if want.is_nan() || got.is_nan() {
        return if want.is_nan() && got.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if got.is_infinite() && got == want as f32 {
        return 0.0; // overflow where the exact value also rounds to inf
    }
    let g = if got.is_infinite() {
        2f64.powi(128).copysign(got as f64)
    } else {
        got as f64
    };
    let w = if want.is_infinite() {
        2f64.powi(128).copysign(want)
    } else {
        want
    };
    if g == w {
        return 0.0;
    }
    let e = (((w.abs().to_bits() >> 52) & 0x7ff) as i32 - 1023).clamp(-126, 127);
    (g - w).abs() / 2f64.powi(e - 23)
}

/// Distance in ulps between two f64 (0 when both are NaN or equal infinities).
fn ulp_dist64(got: f64, want: f64) -> f64 {
    if want.is_nan() || got.is_nan() {
        return if want.is_nan() && got.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let ord = |x: f64| {
        let b = x.to_bits() as i64;
        if b < 0 {
            i64::MIN - b
        } else {
            b
        }
    };
    (ord(got) as i128 - ord(want) as i128).unsigned_abs() as f64
}

/// A backend's name and its out-of-place slice function.
type Backend<T> = (&'static str, fn(Op, &[T], &mut [T]));

/// The backends to test.
fn backends32() -> Vec<Backend<f32>> {
    let mut v: Vec<Backend<f32>> = vec![("portable", portable::s::slice_body)];
    #[cfg(target_arch = "x86_64")]
    if super::dispatch::has_avx2_fma() {
        // SAFETY: only pushed after AVX2 and FMA were detected.
        v.push(("avx2+fma", |op, i, o| unsafe {
            super::dispatch::avx2::s::slice(op, i, o)
        }));
    }
    v
}

fn backends64() -> Vec<Backend<f64>> {
    let mut v: Vec<Backend<f64>> = vec![("portable", portable::d::slice_body)];
    #[cfg(target_arch = "x86_64")]
    if super::dispatch::has_avx2_fma() {
        // SAFETY: only pushed after AVX2 and FMA were detected.
        v.push(("avx2+fma", |op, i, o| unsafe {
            super::dispatch::avx2::d::slice(op, i, o)
        }));
    }
    v
}

/// Runs `op` on every backend, returns the worst error and asserts `bound`.
fn check32(name: &str, op: Op, xs: &[f32], reference: fn(f64) -> f64, bound: f64) -> f64 {
    let want: Vec<f64> = xs.iter().map(|&x| reference(x as f64)).collect();
    let mut got = vec![0f32; xs.len()];
    let mut worst = 0f64;
    for (bname, run) in backends32() {
        run(op, xs, &mut got);
        let (mut m, mut at) = (0f64, 0f32);
        for i in 0..xs.len() {
            let e = ulp_err32(got[i], want[i]);
            if e > m || e.is_nan() {
                m = e;
                at = xs[i];
            }
        }
        println!(
            "f32 {name:8} {bname:9} max {m:.3} ulp at x = {at:e} ({} points)",
            xs.len()
        );
        assert!(
            m <= bound,
            "f32 {name} ({bname}): {m} ulp at x = {at:e} exceeds {bound}"
        );
        worst = worst.max(m);
    }
    worst
}

fn check64(name: &str, op: Op, xs: &[f64], reference: fn(f64) -> f64, bound: f64) -> f64 {
    let want: Vec<f64> = xs.iter().map(|&x| reference(x)).collect();
    let mut got = vec![0f64; xs.len()];
    let mut worst = 0f64;
    for (bname, run) in backends64() {
        run(op, xs, &mut got);
        let (mut m, mut at) = (0f64, 0f64);
        for i in 0..xs.len() {
            let e = ulp_dist64(got[i], want[i]);
            if e > m || e.is_nan() {
                m = e;
                at = xs[i];
            }
        }
        println!(
            "f64 {name:8} {bname:9} max {m:.0} ulp at x = {at:e} ({} points)",
            xs.len()
        );
        assert!(
            m <= bound,
            "f64 {name} ({bname}): {m} ulp at x = {at:e} exceeds {bound}"
        );
        worst = worst.max(m);
    }
    worst
}

/// Special inputs that every function sees in addition to its ranges.
const SPECIAL32: [f32; 8] = [
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MIN_POSITIVE,
    1e-45,
    f32::MAX,
];
const SPECIAL64: [f64; 8] = [
    0.0,
    -0.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    f64::MIN_POSITIVE,
    5e-324,
    f64::MAX,
];

/// Samples on +-[tiny, a] and [b, c] linearly, plus specials.
fn sym32(tiny: f32, a: f32, lin_lo: f64, lin_hi: f64) -> Vec<f32> {
    let mut v = Vec::new();
    bits32(tiny, a, NB / 2, &mut v);
    mirror(&mut v);
    v.extend(lin(lin_lo, lin_hi, NL).map(|x| x as f32));
    v.extend(SPECIAL32);
    v
}

fn sym64(tiny: f64, a: f64, lin_lo: f64, lin_hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    bits64(tiny, a, NB / 2, &mut v);
    mirror(&mut v);
    v.extend(lin(lin_lo, lin_hi, NL));
    v.extend(SPECIAL64);
    v
}

fn sigmoid_ref32(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn softplus_ref32(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Sigmoid from libm exp with the sum 1 + e kept exact (two-sum) and one
/// Newton correction of the quotient: only exp's own error remains.
fn sigmoid_ref64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let e = (-x.abs()).exp();
    let num = if x >= 0.0 { 1.0 } else { e };
    let dh = 1.0 + e;
    let dl = e - (dh - 1.0); // exact: |e| <= 1
    let q = num / dh;
    let r = (-q).mul_add(dh, num) - q * dl;
    q + r / dh
}

/// Softplus from libm exp and log1p; the final sum of two non-negative terms
/// is a single rounding.
fn softplus_ref64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let m = if x > 0.0 { x } else { 0.0 };
    m + (-x.abs()).exp().ln_1p()
}

/// Floats nearest to k pi/2 and their neighbours: the hardest inputs for the
/// argument reduction.
fn near_pio2_32(kmax: u32, v: &mut Vec<f32>) {
    let step = (sparse() as u32).max(1);
    for k in (1..kmax).step_by(step as usize) {
        let c = (k as f64 * core::f64::consts::FRAC_PI_2) as f32;
        for d in -2i32..=2 {
            let x = f32::from_bits((c.to_bits() as i32 + d) as u32);
            v.push(x);
            v.push(-x);
        }
    }
}

fn near_pio2_64(kmax: u64, v: &mut Vec<f64>) {
    let stride = (kmax / 200_000).max(1) * sparse() as u64;
    let mut k = 1;
    while k < kmax {
        let c = k as f64 * core::f64::consts::FRAC_PI_2;
        for d in -2i64..=2 {
            let x = f64::from_bits((c.to_bits() as i64 + d) as u64);
            v.push(x);
            v.push(-x);
        }
        k += stride + (k % 7);
    }
}

/// Inputs inside the vector reduction range (|x| < 1e9).
fn trig32() -> Vec<f32> {
    let mut v = sym32(1e-30, 1e5, -1e5, 1e5);
    v.extend(lin(-10.0, 10.0, NL).map(|x| x as f32));
    let mut far = Vec::new();
    bits32(1e5, 9.99e8, NB / 20, &mut far);
    mirror(&mut far);
    v.extend(far);
    near_pio2_32(70_000, &mut v);
    v
}

fn trig64() -> Vec<f64> {
    let mut v = sym64(1e-300, 1e5, -1e5, 1e5);
    v.extend(lin(-10.0, 10.0, NL));
    let mut far = Vec::new();
    bits64(1e5, 9.99e8, NB / 20, &mut far);
    mirror(&mut far);
    v.extend(far);
    near_pio2_64(600_000_000, &mut v);
    v
}

/// Inputs beyond the range, where lanes fall back to std (same block as
/// in-range lanes, to exercise the mixed path).
fn beyond<T: Copy + From<f32>>() -> Vec<T> {
    let mut v = Vec::new();
    let mut x = 1.0e9f32;
    while x < 1e30 {
        v.push(T::from(x));
        v.push(T::from(-x));
        v.push(T::from(0.5));
        x *= 1.37;
    }
    v
}

#[test]
fn exp_f32() {
    let mut v = sym32(1e-30, 110.0, -104.0, 89.0);
    v.extend(lin(88.0, 88.8, NL / 10).map(|x| x as f32));
    v.extend(lin(-104.0, -86.0, NL / 10).map(|x| x as f32));
    check32("exp", Op::Exp, &v, f64::exp, 1.5);
}

#[test]
fn exp_f64() {
    let mut v = sym64(1e-300, 750.0, -746.0, 710.0);
    v.extend(lin(705.0, 709.9, NL / 10));
    v.extend(lin(-746.0, -700.0, NL / 10));
    check64("exp", Op::Exp, &v, f64::exp, 1.0);
}

#[test]
fn log_f32() {
    let mut v = Vec::new();
    bits32(f32::from_bits(1), f32::MAX, NB, &mut v);
    v.extend(lin(0.5, 2.0, NL).map(|x| x as f32));
    v.extend(lin(0.0, 1000.0, NL / 4).map(|x| x as f32));
    v.extend(SPECIAL32);
    v.extend([-1.0, -1e-40, -f32::MAX]);
    check32("log", Op::Ln, &v, f64::ln, 1.0);
}

#[test]
fn log_f64() {
    let mut v = Vec::new();
    bits64(f64::from_bits(1), f64::MAX, NB, &mut v);
    v.extend(lin(0.5, 2.0, NL));
    v.extend(lin(0.0, 1000.0, NL / 4));
    v.extend(SPECIAL64);
    v.extend([-1.0, -1e-310, -f64::MAX]);
    check64("log", Op::Ln, &v, f64::ln, 1.0);
}

#[test]
fn tanh_f32() {
    let mut v = sym32(1e-30, 20.0, -10.0, 10.0);
    // Where the f32 form switches: x itself below 0.0004, +-1 from 9.
    for (lo, hi) in [(3.5e-4, 4.5e-4), (8.9, 9.1), (7.8, 8.0)] {
        v.extend(lin(lo, hi, NL / 10).flat_map(|x| [x as f32, -x as f32]));
    }
    check32("tanh", Op::Tanh, &v, f64::tanh, 7.0);
}

#[test]
fn tanh_f64() {
    let mut v = sym64(1e-300, 40.0, -10.0, 10.0);
    v.extend(lin(0.6, 0.65, NL / 10));
    check64("tanh", Op::Tanh, &v, f64::tanh, 2.0);
}

#[test]
fn sigmoid_f32() {
    let v = sym32(1e-30, 110.0, -110.0, 40.0);
    check32("sigmoid", Op::Sigmoid, &v, sigmoid_ref32, 2.5);
}

#[test]
fn sigmoid_f64() {
    let v = sym64(1e-300, 750.0, -750.0, 50.0);
    check64("sigmoid", Op::Sigmoid, &v, sigmoid_ref64, 2.0);
}

#[test]
fn softplus_f32() {
    let v = sym32(1e-30, 110.0, -110.0, 110.0);
    check32("softplus", Op::Softplus, &v, softplus_ref32, 2.5);
}

#[test]
fn softplus_f64() {
    let v = sym64(1e-300, 750.0, -750.0, 750.0);
    check64("softplus", Op::Softplus, &v, softplus_ref64, 2.0);
}

#[test]
fn sin_f32() {
    check32("sin", Op::Sin, &trig32(), f64::sin, 0.6);
    check32("sin>1e9", Op::Sin, &beyond::<f32>(), f64::sin, 1.0);
}

#[test]
fn cos_f32() {
    check32("cos", Op::Cos, &trig32(), f64::cos, 0.6);
    check32("cos>1e9", Op::Cos, &beyond::<f32>(), f64::cos, 1.0);
}

#[test]
fn sin_f64() {
    check64("sin", Op::Sin, &trig64(), f64::sin, 2.0);
    check64("sin>1e9", Op::Sin, &beyond::<f64>(), f64::sin, 0.0);
}

#[test]
fn cos_f64() {
    check64("cos", Op::Cos, &trig64(), f64::cos, 2.0);
    check64("cos>1e9", Op::Cos, &beyond::<f64>(), f64::cos, 0.0);
}

#[test]
fn sqrt_exact() {
    let v = sym32(1e-45, f32::MAX, 0.0, 1e6);
    check32("sqrt", Op::Sqrt, &v, f64::sqrt, 0.5);
    let v = sym64(5e-324, f64::MAX, 0.0, 1e6);
    check64("sqrt", Op::Sqrt, &v, f64::sqrt, 0.0);
}

/// In-place and out-of-place loops (and odd tails) agree bit for bit.
#[test]
fn in_place_matches_slice() {
    let ops = [
        Op::Exp,
        Op::Ln,
        Op::Tanh,
        Op::Sigmoid,
        Op::Sin,
        Op::Cos,
        Op::Sqrt,
        Op::Softplus,
    ];
    for len in [0usize, 1, 3, 7, 8, 9, 31, 257, 1000] {
        let xs: Vec<f32> = (0..len)
            .map(|i| (i as f32 * 0.37 - 40.0) * if i % 5 == 0 { 1e7 } else { 1.0 })
            .collect();
        let xd: Vec<f64> = xs.iter().map(|&x| x as f64 * 1.01).collect();
        for op in ops {
            let mut a = vec![0f32; len];
            super::dispatch::run::s::slice(op, &xs, &mut a);
            let mut b = xs.clone();
            super::dispatch::run::s::in_place(op, &mut b);
            assert_eq!(
                a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{op:?} f32 len {len}"
            );
            let mut a = vec![0f64; len];
            super::dispatch::run::d::slice(op, &xd, &mut a);
            let mut b = xd.clone();
            super::dispatch::run::d::in_place(op, &mut b);
            assert_eq!(
                a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{op:?} f64 len {len}"
            );
        }
    }
}
