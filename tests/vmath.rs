//! Special values, saturation, tails and the public API surface.

use batchgraph::runtime::vmath::{self, VMath};

/// Applies a slice function to single values.
fn one<T: VMath + Default>(f: fn(&[T], &mut [T]), x: T) -> T {
    let mut y = [T::default()];
    f(&[x], &mut y);
    y[0]
}

macro_rules! special_tests {
    ($modname:ident, $t:ident, $big:expr, $sub_exp:expr) => {
        mod $modname {
            use super::*;
            const INF: $t = $t::INFINITY;
            const NAN: $t = $t::NAN;

            #[test]
            fn exp() {
                let f = <$t>::exp_slice;
                assert!(one(f, NAN).is_nan());
                assert_eq!(one(f, INF), INF);
                assert_eq!(one(f, -INF), 0.0);
                assert_eq!(one(f, $big), INF);
                assert_eq!(one(f, -$big), 0.0);
                assert_eq!(one(f, 0.0), 1.0);
                let s = one(f, $sub_exp);
                assert!(s > 0.0 && s < $t::MIN_POSITIVE, "subnormal result {s:e}");
            }

            #[test]
            fn log() {
                let f = <$t>::log_slice;
                assert!(one(f, NAN).is_nan());
                assert_eq!(one(f, 0.0), -INF);
                assert_eq!(one(f, -0.0), -INF);
                assert!(one(f, -1.0).is_nan());
                assert!(one(f, -INF).is_nan());
                assert_eq!(one(f, INF), INF);
                assert_eq!(one(f, 1.0), 0.0);
                let tiny = $t::from_bits(1);
                let want = (tiny as f64).ln();
                assert!(((one(f, tiny) as f64) - want).abs() < 1e-5 * want.abs());
                assert!((one(f, $t::MAX) as f64 - ($t::MAX as f64).ln()).abs() < 1e-4);
            }

            #[test]
            fn tanh() {
                let f = <$t>::tanh_slice;
                assert!(one(f, NAN).is_nan());
                assert_eq!(one(f, INF), 1.0);
                assert_eq!(one(f, -INF), -1.0);
                assert_eq!(one(f, $big), 1.0);
                assert_eq!(one(f, -$big), -1.0);
                let z = one(f, -0.0);
                assert!(z == 0.0 && z.is_sign_negative(), "tanh(-0) = {z}");
                assert!(one(f, 0.0).is_sign_positive());
                assert_eq!(one(f, 1e-30), 1e-30);
            }

            #[test]
            fn sigmoid() {
                let f = <$t>::sigmoid_slice;
                assert!(one(f, NAN).is_nan());
                assert_eq!(one(f, INF), 1.0);
                assert_eq!(one(f, -INF), 0.0);
                assert_eq!(one(f, $big), 1.0);
                assert_eq!(one(f, -$big), 0.0);
                assert_eq!(one(f, 0.0), 0.5);
                assert_eq!(one(f, -0.0), 0.5);
                for x in [
                    -1e30,
                    -1e5,
                    -500.0,
                    -100.0,
                    100.0,
                    500.0,
                    1e5,
                    1e30,
                    $t::MAX,
                    -$t::MAX,
                ] {
                    let y = one(f, x);
                    assert!((0.0..=1.0).contains(&y), "sigmoid({x}) = {y}");
                }
            }

            #[test]
            fn softplus() {
                let f = <$t>::softplus_slice;
                assert!(one(f, NAN).is_nan());
                assert_eq!(one(f, INF), INF);
                assert_eq!(one(f, -INF), 0.0);
                assert_eq!(one(f, $big), $big);
                assert_eq!(one(f, -$big), 0.0);
                assert_eq!(one(f, $t::MAX), $t::MAX);
                assert!((one(f, 0.0) - core::$t::consts::LN_2).abs() <= $t::EPSILON);
                assert!(one(f, -1e30) >= 0.0);
            }

            #[test]
            fn sin_cos() {
                let (s, c) = (<$t>::sin_slice, <$t>::cos_slice);
                for x in [NAN, INF, -INF] {
                    assert!(one(s, x).is_nan() && one(c, x).is_nan());
                }
                let z = one(s, -0.0);
                assert!(z == 0.0 && z.is_sign_negative());
                assert_eq!(one(s, 0.0), 0.0);
                assert_eq!(one(c, 0.0), 1.0);
                assert_eq!(one(c, -0.0), 1.0);
                // Beyond the reduction range, lanes are computed by std.
                for x in [1e10, -3e12, 1e30, $t::MAX] {
                    assert_eq!(one(s, x), x.sin());
                    assert_eq!(one(c, x), x.cos());
                }
            }

            #[test]
            fn sqrt() {
                let f = <$t>::sqrt_slice;
                assert!(one(f, -1.0).is_nan());
                assert!(one(f, NAN).is_nan());
                assert_eq!(one(f, 4.0), 2.0);
                assert_eq!(one(f, INF), INF);
                let z = one(f, -0.0);
                assert!(z == 0.0 && z.is_sign_negative());
            }

            /// Every length (vector body + tail) gives the same bits as
            /// one-element calls, in place and out of place; a huge lane in
            /// a sin block does not disturb its neighbours.
            #[test]
            fn tails_and_in_place() {
                type S = fn(&[$t], &mut [$t]);
                type P = fn(&mut [$t]);
                let fs: [(S, P); 8] = [
                    (<$t>::exp_slice, <$t>::exp_in_place),
                    (<$t>::log_slice, <$t>::log_in_place),
                    (<$t>::tanh_slice, <$t>::tanh_in_place),
                    (<$t>::sigmoid_slice, <$t>::sigmoid_in_place),
                    (<$t>::sin_slice, <$t>::sin_in_place),
                    (<$t>::cos_slice, <$t>::cos_in_place),
                    (<$t>::sqrt_slice, <$t>::sqrt_in_place),
                    (<$t>::softplus_slice, <$t>::softplus_in_place),
                ];
                for len in [0usize, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 33, 255, 256, 257, 600] {
                    let x: Vec<$t> = (0..len)
                        .map(|i| if i == 300 { 1e20 } else { (i as $t) * 0.173 - 20.0 })
                        .collect();
                    for (slice, in_place) in fs {
                        let mut y = vec![0.0; len];
                        slice(&x, &mut y);
                        let mut z = x.clone();
                        in_place(&mut z);
                        for i in 0..len {
                            let single = one(slice, x[i]);
                            assert!(y[i].to_bits() == single.to_bits() || (y[i].is_nan() && single.is_nan()));
                            assert!(y[i].to_bits() == z[i].to_bits() || (y[i].is_nan() && z[i].is_nan()));
                        }
                    }
                }
            }

            #[test]
            fn grads() {
                for len in [0usize, 1, 7, 8, 9, 100] {
                    let y: Vec<$t> = (0..len).map(|i| (i as $t) / (len as $t + 1.0)).collect();
                    let g: Vec<$t> = (0..len).map(|i| 1.5 - i as $t * 0.01).collect();
                    let mut o = vec![0.0; len];
                    vmath::tanh_grad(&y, &g, &mut o);
                    for i in 0..len {
                        let want = g[i] * (1.0 - y[i] * y[i]);
                        assert!((o[i] - want).abs() <= 2.0 * $t::EPSILON * want.abs().max(1.0));
                    }
                    <$t>::sigmoid_grad(&y, &g, &mut o);
                    for i in 0..len {
                        let want = g[i] * y[i] * (1.0 - y[i]);
                        assert!((o[i] - want).abs() <= 2.0 * $t::EPSILON * want.abs().max(1.0));
                    }
                }
            }

            #[test]
            #[should_panic(expected = "lengths differ")]
            fn length_mismatch_panics() {
                let mut out = [0.0 as $t; 2];
                vmath::exp_slice(&[1.0 as $t; 3], &mut out);
            }

            #[test]
            #[should_panic(expected = "lengths differ")]
            fn grad_length_mismatch_panics() {
                let mut out = [0.0 as $t; 3];
                vmath::sigmoid_grad(&[1.0 as $t; 3], &[1.0 as $t; 2], &mut out);
            }
        }
    };
}

special_tests!(f32_special, f32, 1000.0f32, -100.0f32);
special_tests!(f64_special, f64, 1000.0f64, -720.0f64);

#[test]
fn backend_is_reported() {
    let b = vmath::backend();
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        b == vmath::Backend::Avx2Fma,
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    );
    let _ = b;
}

/// Every unary op with a `vector` kernel: its array `map` (the SIMD pass, the
/// runtime's [`UnaryMap`](batchgraph::runtime::vector::UnaryMap)) agrees
/// with its scalar `value` expression (libm) over the op's test interval and a
/// wider one, in f32 and f64, on contiguous and strided arrays.
mod table {
    use batchgraph::runtime::vector::UnaryMap;
    use batchgraph::{Scalar, Unary};
    use ndarray::{ArrayD, IxDyn};

    /// The largest error of `map` against `value`, in units of the type's
    /// epsilon times max(|value|, 1e-3) (ulps for results of normal size).
    fn worst<T: Scalar>(u: Unary, lo: f64, hi: f64) -> f64 {
        let n = 4099; // odd: exercises the vector loops' remainders
        let xs: Vec<T> = (0..n)
            .map(|i| T::of(lo + (hi - lo) * i as f64 / (n - 1) as f64))
            .collect();
        let a = ArrayD::from_shape_vec(IxDyn(&[n]), xs).unwrap();
        let mapped = u.map(&a);
        let strided = u.map(&a.clone().slice_move(ndarray::s![..;2]).into_dyn()); // stride 2: the scalar path
        let mut worst = 0f64;
        for (i, (&x, &got)) in a.iter().zip(mapped.iter()).enumerate() {
            let want = u.value(x).to_f64().unwrap();
            let scale = want.abs().max(1e-3) * T::epsilon().to_f64().unwrap();
            worst = worst.max((got.to_f64().unwrap() - want).abs() / scale);
            if i % 2 == 0 {
                assert_eq!(strided[i / 2].to_f64(), u.value(x).to_f64(), "{u} strided");
            }
        }
        worst
    }

    /// An array long enough to be split over threads gives what one pass gives.
    #[test]
    fn a_large_array_split_over_threads_matches_one_pass() {
        use batchgraph::runtime::vmath::{VMath, PARALLEL_FROM};
        let n = PARALLEL_FROM * 3 + 17;
        let xs: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32) * 8.0 - 4.0).collect();
        let a = ArrayD::from_shape_vec(IxDyn(&[n]), xs.clone()).unwrap();
        let mut one_pass = xs;
        f32::tanh_in_place(&mut one_pass);
        assert_eq!(Unary::Tanh.map(&a).into_raw_vec_and_offset().0, one_pass);
    }

    #[test]
    fn vector_kernels_agree_with_the_scalar_value() {
        for &u in Unary::ALL {
            let (lo, hi) = u.tested_on();
            for (lo, hi) in [(lo, hi), (lo * 5.0, hi * 5.0)] {
                let (lo, hi) = if matches!(u, Unary::Log | Unary::Sqrt) {
                    (lo.abs(), hi)
                } else {
                    (lo, hi)
                };
                let (e32, e64) = (worst::<f32>(u, lo, hi), worst::<f64>(u, lo, hi));
                let bound = if u.has_vector_kernel() { 4.0 } else { 0.0 };
                assert!(
                    e32 <= bound && e64 <= bound,
                    "{u} on ({lo}, {hi}): f32 {e32:.2}, f64 {e64:.2} > {bound}"
                );
            }
        }
    }
}
