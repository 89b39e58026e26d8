//! Branch-free scalar kernels for `f64`; see `f32k` for the conventions
//! (selects instead of branches, `F` = hardware FMA available).
//!
//! AVX2 has no 64-bit float<->int conversions and no 64-bit arithmetic right
//! shift, so integers are moved in and out of floats with the "magic number"
//! trick and halving uses a biased logical shift.

// Constants are kept as published (Cephes, fdlibm) or as printed by
// tools/coeffs.py.
#![allow(clippy::excessive_precision)]

/// `a * b + c`, fused when the backend has FMA.
#[inline(always)]
pub(crate) fn mla<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Adding 1.5 * 2^52 rounds to an integer held in the low mantissa bits.
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// 2^n for n in [-1022, 1023], built directly from exponent bits.
#[inline(always)]
fn pow2i(n: i64) -> f64 {
    f64::from_bits((n.wrapping_add(1023) as u64) << 52)
}

/// e^x: x = n ln2 + r (fdlibm's ln2 split: hi has 32 significant bits, so
/// n * hi is exact), then 1 + r + r^2 P(r) with a degree-9 near-minimax P
/// on |r| <= ln2/2 (fit error 0.14 ulp, from `tools/coeffs.py`), scaled by
/// 2^n in two steps so that subnormal results and overflow come out of
/// plain multiplication.
#[inline(always)]
pub(crate) fn exp<const F: bool>(x: f64) -> f64 {
    // Clamp so that n stays in [-1077, 1025]; comparisons let NaN through.
    let xc = if x > 710.0 { 710.0 } else { x };
    let xc = if xc < -746.0 { -746.0 } else { xc };
    let t = mla::<F>(xc, core::f64::consts::LOG2_E, MAGIC);
    let n = (t.to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64);
    let nf = t - MAGIC;
    let r = mla::<F>(-nf, 6.931_471_803_691_238_164_90e-1, xc);
    let r = mla::<F>(-nf, 1.908_214_929_270_587_700_02e-10, r);
    let mut p = 2.510_037_583_256_123_4e-8;
    p = mla::<F>(p, r, 2.762_007_587_998_336_7e-7);
    p = mla::<F>(p, r, 2.755_726_848_031_002_4e-6);
    p = mla::<F>(p, r, 2.480_152_132_236_869_2e-5);
    p = mla::<F>(p, r, 1.984_126_986_304_054_5e-4);
    p = mla::<F>(p, r, 1.388_888_891_719_671_9e-3);
    p = mla::<F>(p, r, 8.333_333_333_330_065e-3);
    p = mla::<F>(p, r, 4.166_666_666_662_416_4e-2);
    p = mla::<F>(p, r, 1.666_666_666_666_666_9e-1);
    p = mla::<F>(p, r, 5.000_000_000_000_001e-1);
    let y = 1.0 + mla::<F>(r * r, p, r);
    // floor(n / 2) without an arithmetic shift: bias, logical shift, unbias.
    let n1 = ((n.wrapping_add(2048) as u64) >> 1) as i64 - 1024;
    let n2 = n.wrapping_sub(n1);
    y * pow2i(n1) * pow2i(n2)
}

/// Exponent field (0..=2047) as an exact f64 via the magic-number trick.
#[inline(always)]
fn exponent_field(bits: u64) -> f64 {
    const TWO52: f64 = 4_503_599_627_370_496.0;
    f64::from_bits(TWO52.to_bits() | ((bits >> 52) & 0x7ff)) - TWO52
}

/// Natural logarithm, fdlibm `__ieee754_log` without branches: x = 2^k m with
/// m in [sqrt(1/2), sqrt(2)), f = m - 1, s = f/(2+f) and a degree-14 even
/// polynomial in s (one division, no table lookups). Subnormal inputs are
/// pre-scaled by 2^54.
#[inline(always)]
pub(crate) fn ln<const F: bool>(x: f64) -> f64 {
    let sub = x < f64::MIN_POSITIVE;
    let xs = if sub { x * 18_014_398_509_481_984.0 } else { x };
    let bits = xs.to_bits();
    let k = exponent_field(bits) - if sub { 1023.0 + 54.0 } else { 1023.0 };
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let hi = m > core::f64::consts::SQRT_2;
    let m = if hi { m * 0.5 } else { m };
    let k = if hi { k + 1.0 } else { k };
    let f = m - 1.0; // exact
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * mla::<F>(
        w,
        mla::<F>(w, 1.531_383_769_920_937_332e-1, 2.222_219_843_214_978_396e-1),
        3.999_999_999_940_941_908e-1,
    );
    let t2 = z * mla::<F>(
        w,
        mla::<F>(
            w,
            mla::<F>(w, 1.479_819_860_511_658_591e-1, 1.818_357_216_161_805_012e-1),
            2.857_142_874_366_239_149e-1,
        ),
        6.666_666_666_666_735_130e-1,
    );
    let rr = t2 + t1;
    let hfsq = 0.5 * f * f;
    let lo = mla::<F>(k, 1.908_214_929_270_587_700_02e-10, s * (hfsq + rr));
    let r = mla::<F>(k, 6.931_471_803_691_238_164_90e-1, -((hfsq - lo) - f));
    let r = if x == f64::INFINITY { x } else { r };
    let r = if x == 0.0 { f64::NEG_INFINITY } else { r };
    // Negative and NaN inputs give NaN.
    if x >= 0.0 {
        r
    } else {
        f64::NAN
    }
}

/// Hyperbolic tangent. Cephes `tanh`: x + x z P(z)/Q(z) (z = x^2) for
/// |x| < 0.625, 1 - 2/(e^{2|x|} + 1) above. Both branches share one division
/// by selecting numerator and denominator first. Sign restored by copysign
/// (tanh(-0) = -0).
#[inline(always)]
pub(crate) fn tanh<const F: bool>(x: f64) -> f64 {
    let a = x.abs();
    let z = a * a;
    let p = mla::<F>(
        mla::<F>(-9.643_991_794_250_522_386_28e-1, z, -9.928_772_310_019_185_865_64e1),
        z,
        -1.614_687_684_417_084_479_52e3,
    );
    let q = mla::<F>(
        mla::<F>(z + 1.128_116_784_916_329_314_02e2, z, 2.235_488_390_601_004_485_83e3),
        z,
        4.844_063_053_251_254_860_48e3,
    );
    let e = exp::<F>(a + a);
    let small = a < 0.625;
    let num = if small { a * z * p } else { 2.0 };
    let den = if small { q } else { e + 1.0 };
    let d = num / den;
    let y = if small { a + d } else { 1.0 - d };
    y.copysign(x)
}

/// Logistic sigmoid; same formulation as the f32 kernel (no overflow, no
/// NaN for large |x|, accurate tiny results on the negative side).
#[inline(always)]
pub(crate) fn sigmoid<const F: bool>(x: f64) -> f64 {
    let e = exp::<F>(-x.abs());
    let num = if x >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

/// log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}), log1p(u) = ln(1 + u) plus
/// the exact rounding error of 1 + u; see the f32 kernel.
#[inline(always)]
pub(crate) fn softplus<const F: bool>(x: f64) -> f64 {
    let u = exp::<F>(-x.abs());
    let w = 1.0 + u;
    // Fast2Sum: c is exactly the rounding error of w, so
    // log1p(u) = ln(w) + log(1 + c/w) ~= ln(w) + c/w (also right when w == 1).
    let c = u - (w - 1.0);
    let l = ln::<F>(w) + c / w;
    let m = if x > 0.0 { x } else { 0.0 };
    m + l
}

/// |x| below which the vector sin/cos are used; other lanes go to std.
pub(crate) const TRIG_LIMIT: f64 = 1.0e9;

/// Cody–Waite reduction x = n pi/2 + r, |r| <= ~pi/4, returning r and the raw
/// bits whose low two bits are n mod 4. pi/2 is split into three 22-bit
/// pieces plus a full one (122 bits in total, from `tools/coeffs.py`), so for
/// |n| < 2^31 (|x| < ~3e9) the products n * piece_i (i < 4) are exact and the
/// first subtractions cancel exactly, with or without FMA.
#[inline(always)]
pub(crate) fn reduce_pio2<const F: bool>(x: f64) -> (f64, u64) {
    let t = mla::<F>(x, core::f64::consts::FRAC_2_PI, MAGIC);
    let n = t - MAGIC;
    let r = mla::<F>(-n, 1.570_796_489_715_576_2, x);
    let r = mla::<F>(-n, -1.629_206_849_429_465_4e-7, r);
    let r = mla::<F>(-n, 5.390_302_529_957_765e-15, r);
    let r = mla::<F>(-n, 3.282_003_542_873_500_5e-22, r);
    (r, t.to_bits())
}

/// sin r and cos r for |r| <= pi/4 (Cephes `sin.c` polynomials); cos uses
/// fdlibm's compensation of 1 - r^2/2.
#[inline(always)]
fn sincos_poly<const F: bool>(r: f64) -> (f64, f64) {
    let z = r * r;
    let mut s = 1.589_623_015_765_465_680_60e-10;
    s = mla::<F>(s, z, -2.505_074_776_285_780_728_66e-8);
    s = mla::<F>(s, z, 2.755_731_362_138_572_452_13e-6);
    s = mla::<F>(s, z, -1.984_126_982_958_953_859_96e-4);
    s = mla::<F>(s, z, 8.333_333_333_322_118_588_78e-3);
    s = mla::<F>(s, z, -1.666_666_666_666_663_072_95e-1);
    let s = mla::<F>(r * z, s, r);
    let mut c = -1.135_853_652_138_768_173_00e-11;
    c = mla::<F>(c, z, 2.087_570_084_197_473_167_78e-9);
    c = mla::<F>(c, z, -2.755_731_417_929_673_881_12e-7);
    c = mla::<F>(c, z, 2.480_158_728_885_170_453_48e-5);
    c = mla::<F>(c, z, -1.388_888_888_887_305_641_16e-3);
    c = mla::<F>(c, z, 4.166_666_666_666_659_292_18e-2);
    let hz = 0.5 * z;
    let w = 1.0 - hz;
    let c = w + mla::<F>(z * z, c, (1.0 - w) - hz);
    (s, c)
}

/// sin x for |x| < `TRIG_LIMIT` (other lanes are patched by the caller).
#[inline(always)]
pub(crate) fn sin<const F: bool>(x: f64) -> f64 {
    let (r, q) = reduce_pio2::<F>(x);
    let (s, c) = sincos_poly::<F>(r);
    let y = if q & 1 == 1 { c } else { s };
    let y = f64::from_bits(y.to_bits() ^ ((q & 2) << 62));
    // The polynomial loses the sign of -0. (Not `x` itself: selecting the input
    // lets LLVM turn an in-place loop into a masked store, slow on AMD's Zen.)
    if x == 0.0 {
        0.0f64.copysign(x)
    } else {
        y
    }
}

/// cos x for |x| < `TRIG_LIMIT` (other lanes are patched by the caller).
#[inline(always)]
pub(crate) fn cos<const F: bool>(x: f64) -> f64 {
    let (r, q) = reduce_pio2::<F>(x);
    let (s, c) = sincos_poly::<F>(r);
    let y = if q & 1 == 1 { s } else { c };
    f64::from_bits(y.to_bits() ^ ((q.wrapping_add(1) & 2) << 62))
}

/// g * (1 - y^2): the tanh derivative expressed through the forward output.
#[inline(always)]
pub(crate) fn tanh_grad<const F: bool>(y: f64, g: f64) -> f64 {
    g * mla::<F>(-y, y, 1.0)
}

/// g * y * (1 - y): the sigmoid derivative expressed through the output.
#[inline(always)]
pub(crate) fn sigmoid_grad<const F: bool>(y: f64, g: f64) -> f64 {
    g * y * (1.0 - y)
}
