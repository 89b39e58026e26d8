//! Branch-free scalar kernels for `f32`.
//!
//! Every kernel is `#[inline(always)]` and uses only arithmetic, bit casts and
//! selects (`if c { a } else { b }` on values that are both already computed),
//! so that a plain loop over a slice is auto-vectorized by LLVM. The const
//! parameter `F` says whether a fused multiply-add is available in hardware:
//! `F = true` is only instantiated inside `#[target_feature(enable = "fma")]`
//! functions (or on targets that always have FMA), otherwise `mul_add` would be
//! a libm call and block vectorization.

// Constants are kept as published (Cephes), digits beyond f32 precision included.
#![allow(clippy::excessive_precision)]

use super::f64k;

/// `a * b + c`, fused when the backend has FMA.
#[inline(always)]
pub(crate) fn mla<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Adding 1.5 * 2^23 rounds to an integer that lands in the low mantissa bits
/// (no float->int conversion instruction needed, and ties go to even).
const MAGIC: f32 = 12_582_912.0;

/// 2^n for n in [-126, 127], built directly from exponent bits.
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) as u32) << 23)
}

/// e^x. Cephes `expf`: x = n ln2 + r with a Cody–Waite split of ln 2 (the high
/// part has 9 significant bits, so n * hi is exact without FMA), a degree-7
/// polynomial on |r| <= ln2/2, then scaling by 2^n in two steps so that
/// subnormal results and overflow to +inf come out of plain multiplication.
#[inline(always)]
pub(crate) fn exp<const F: bool>(x: f32) -> f32 {
    // Clamp so that n stays in [-150, 128]; comparisons let NaN through.
    let xc = if x > 89.0 { 89.0 } else { x };
    let xc = if xc < -104.0 { -104.0 } else { xc };
    let t = mla::<F>(xc, core::f32::consts::LOG2_E, MAGIC);
    let n = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let nf = t - MAGIC;
    let r = mla::<F>(-nf, 0.693_359_375, xc);
    let r = mla::<F>(-nf, -2.121_944_4e-4, r);
    let mut p = 1.987_569_15e-4;
    p = mla::<F>(p, r, 1.398_199_950_7e-3);
    p = mla::<F>(p, r, 8.333_451_907_3e-3);
    p = mla::<F>(p, r, 4.166_579_589_4e-2);
    p = mla::<F>(p, r, 1.666_666_545_9e-1);
    p = mla::<F>(p, r, 5.000_000_120_1e-1);
    let y = mla::<F>(p, r * r, r) + 1.0;
    // Two factors, each a normal power of two, cover n in [-252, 254].
    let n1 = n >> 1;
    let n2 = n.wrapping_sub(n1);
    y * pow2i(n1) * pow2i(n2)
}

/// Natural logarithm. Cephes `logf`: frexp-style split x = 2^e * m with
/// m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial in m - 1, and ln 2 added
/// back in two parts. Subnormal inputs are pre-scaled by 2^23.
#[inline(always)]
pub(crate) fn ln<const F: bool>(x: f32) -> f32 {
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits() as i32;
    let e = ((bits >> 23) & 0xff) - 126 - if sub { 23 } else { 0 };
    // Mantissa in [0.5, 1).
    let m = f32::from_bits(((bits & 0x007f_ffff) | 0x3f00_0000) as u32);
    let lo = m < core::f32::consts::FRAC_1_SQRT_2;
    let e = e - lo as i32;
    let f = if lo { m + m } else { m } - 1.0; // exact
    let z = f * f;
    let mut p = 7.037_683_629_2e-2;
    p = mla::<F>(p, f, -1.151_461_031_0e-1);
    p = mla::<F>(p, f, 1.167_699_874_0e-1);
    p = mla::<F>(p, f, -1.242_014_084_6e-1);
    p = mla::<F>(p, f, 1.424_932_278_7e-1);
    p = mla::<F>(p, f, -1.666_805_766_5e-1);
    p = mla::<F>(p, f, 2.000_071_476_5e-1);
    p = mla::<F>(p, f, -2.499_999_399_3e-1);
    p = mla::<F>(p, f, 3.333_333_117_4e-1);
    let fe = e as f32;
    let mut y = p * f * z;
    y = mla::<F>(fe, -2.121_944_4e-4, y);
    y = mla::<F>(z, -0.5, y);
    let r = mla::<F>(fe, 0.693_359_375, f + y);
    let r = if x == f32::INFINITY { x } else { r };
    let r = if x == 0.0 { f32::NEG_INFINITY } else { r };
    // Negative and NaN inputs give NaN.
    if x >= 0.0 {
        r
    } else {
        f32::NAN
    }
}

/// Hyperbolic tangent. The rational form XLA's CPU backend and Eigen use
/// (`generic_fast_tanh_float`): x p(x^2) / q(x^2), degree 13 over 6, on x
/// clamped to +-7.905311 (where it reaches 1), and x itself below 0.0004
/// (where x^3/3 is under half an ulp, and x p(x^2) could lose subnormal
/// bits). About 2.5x cheaper than 1 - 2/(e^{2x} + 1) with its exponential,
/// for 4.6 ulp at worst with FMA, 6.6 without, against 1.3 (measured by
/// `cargo test --release --lib vmath::accuracy -- --nocapture`).
/// From 9 on the result is exactly +-1, as the rounded tanh is.
/// The clamp compares, so NaN passes through; tanh(-0) = -0.
#[inline(always)]
pub(crate) fn tanh<const F: bool>(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let c = if x > CLAMP { CLAMP } else { x };
    let c = if c < -CLAMP { -CLAMP } else { c };
    let z = c * c;
    let mut p = -2.760_768_477_423_55e-16;
    p = mla::<F>(p, z, 2.000_187_904_824_77e-13);
    p = mla::<F>(p, z, -8.604_671_522_137_35e-11);
    p = mla::<F>(p, z, 5.122_297_090_371_14e-8);
    p = mla::<F>(p, z, 1.485_722_357_179_79e-5);
    p = mla::<F>(p, z, 6.372_619_288_754_36e-4);
    p = mla::<F>(p, z, 4.893_524_558_917_86e-3);
    let mut q = 1.198_258_394_667_02e-6;
    q = mla::<F>(q, z, 1.185_347_056_866_54e-4);
    q = mla::<F>(q, z, 2.268_434_632_439_00e-3);
    q = mla::<F>(q, z, 4.893_525_185_543_85e-3);
    let r = c * p / q;
    let a = x.abs();
    // From 9 on, tanh rounds to exactly +-1 (the clamped rational is an ulp short).
    let r = if a >= 9.0 { 1.0f32.copysign(x) } else { r };
    // `c`, not `x`: selecting the input itself lets LLVM turn an in-place loop
    // into a masked store, which is microcoded (slow) on AMD's Zen.
    if a < 0.0004 {
        c
    } else {
        r
    }
}

/// Logistic sigmoid 1/(1+e^{-x}), evaluated as num/(1+e^{-|x|}) with
/// num = 1 for x >= 0 and e^{-|x|} otherwise: the exponential never
/// overflows (no inf/inf NaN) and tiny negative-side results keep their
/// relative accuracy down into the subnormals.
#[inline(always)]
pub(crate) fn sigmoid<const F: bool>(x: f32) -> f32 {
    let e = exp::<F>(-x.abs());
    let num = if x >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

/// log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}): both terms are >= 0, so there
/// is no cancellation and no overflow. log1p(u) = ln(w) + c/w with w = 1 + u
/// and c its exact rounding error, so tiny u keep full relative accuracy.
#[inline(always)]
pub(crate) fn softplus<const F: bool>(x: f32) -> f32 {
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
pub(crate) const TRIG_LIMIT: f32 = 1.0e9;

/// sin x, computed in f64: the argument reduction by pi/2 is then exact
/// without FMA (see `f64k::reduce_pio2`), and short Taylor polynomials in f64
/// are far more accurate than f32 needs, so the only visible error is the
/// final rounding. Valid for |x| < `TRIG_LIMIT`.
#[inline(always)]
pub(crate) fn sin<const F: bool>(x: f32) -> f32 {
    let (r, q) = f64k::reduce_pio2::<F>(x as f64);
    let (s, c) = sincos_short::<F>(r);
    let y = if q & 1 == 1 { c } else { s };
    let y = f64::from_bits(y.to_bits() ^ ((q & 2) << 62)) as f32;
    // The reduction loses the sign of -0. (Not `x` itself: see `tanh`.)
    if x == 0.0 {
        0.0f32.copysign(x)
    } else {
        y
    }
}

/// cos x; see [`sin`].
#[inline(always)]
pub(crate) fn cos<const F: bool>(x: f32) -> f32 {
    let (r, q) = f64k::reduce_pio2::<F>(x as f64);
    let (s, c) = sincos_short::<F>(r);
    let y = if q & 1 == 1 { s } else { c };
    f64::from_bits(y.to_bits() ^ ((q.wrapping_add(1) & 2) << 62)) as f32
}

/// sin r and cos r for |r| <= pi/4 to about 2^-28 relative (Taylor, degree
/// 9 and 10), enough for a correctly rounded-looking f32 result.
#[inline(always)]
fn sincos_short<const F: bool>(r: f64) -> (f64, f64) {
    use f64k::mla as m;
    let z = r * r;
    let mut s = 1.0 / 362_880.0;
    s = m::<F>(s, z, -1.0 / 5040.0);
    s = m::<F>(s, z, 1.0 / 120.0);
    s = m::<F>(s, z, -1.0 / 6.0);
    let s = r * m::<F>(z, s, 1.0);
    let mut c = -1.0 / 3_628_800.0;
    c = m::<F>(c, z, 1.0 / 40_320.0);
    c = m::<F>(c, z, -1.0 / 720.0);
    c = m::<F>(c, z, 1.0 / 24.0);
    c = m::<F>(c, z, -0.5);
    let c = m::<F>(c, z, 1.0);
    (s, c)
}

/// g * (1 - y^2): the tanh derivative expressed through the forward output.
#[inline(always)]
pub(crate) fn tanh_grad<const F: bool>(y: f32, g: f32) -> f32 {
    g * mla::<F>(-y, y, 1.0)
}

/// g * y * (1 - y): the sigmoid derivative expressed through the output.
#[inline(always)]
pub(crate) fn sigmoid_grad<const F: bool>(y: f32, g: f32) -> f32 {
    g * y * (1.0 - y)
}
