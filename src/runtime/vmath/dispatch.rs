//! Slice loops and the runtime choice between the portable build and an
//! AVX2+FMA build of the same loops.
//!
//! `bodies!` stamps out the per-type loops twice: once as plain functions
//! (baseline target features, `F` = FMA only if the target always has it)
//! and once, on x86_64, inside `#[target_feature(enable = "avx2,fma")]`
//! functions so that LLVM vectorizes the same code 8 x f32 / 4 x f64 wide
//! with FMAs. `run` checks lengths and picks one, detecting the CPU once.

use super::{f32k, f64k};

/// Which elementwise function to run; matched once per call, outside the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Exp,
    Ln,
    Tanh,
    Sigmoid,
    Sin,
    Cos,
    Sqrt,
    Softplus,
}

/// Which fused derivative to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grad {
    Tanh,
    Sigmoid,
}

// The loops are macros rather than generic functions taking a closure: a
// closure or fn-item shim is a separate function that LLVM may decline to
// inline into the `#[target_feature]` caller, and it would then be compiled
// without AVX2/FMA (`mul_add` becoming a libm call). Calling the
// `#[inline(always)]` kernels directly avoids that.

/// `out[i] = k(input[i])`.
macro_rules! map {
    ($input:expr, $out:expr, $k:expr) => {
        for (o, &x) in $out.iter_mut().zip($input) {
            *o = $k(x);
        }
    };
}

/// `data[i] = k(data[i])`.
macro_rules! map_in_place {
    ($data:expr, $k:expr) => {
        for x in $data.iter_mut() {
            *x = $k(*x);
        }
    };
}

/// Block size for the trig loops: small enough to stay in L1 for the
/// read-only range check, large enough to amortize it.
const TRIG_BLOCK: usize = 256;

/// sin/cos loop: blocks whose inputs are all inside the reduction range run
/// the vectorized kernel; a block with an out-of-range lane (huge, inf, NaN)
/// takes a per-element path where those lanes call std instead.
macro_rules! map_trig {
    ($input:expr, $out:expr, $k:expr, $slow:expr, $limit:expr) => {
        for (ic, oc) in $input.chunks(TRIG_BLOCK).zip($out.chunks_mut(TRIG_BLOCK)) {
            if all_below(ic, $limit) {
                map!(ic, oc, $k);
            } else {
                for (o, &x) in oc.iter_mut().zip(ic) {
                    *o = if x.abs() < $limit { $k(x) } else { $slow(x) };
                }
            }
        }
    };
}

macro_rules! map_trig_in_place {
    ($data:expr, $k:expr, $slow:expr, $limit:expr) => {
        for c in $data.chunks_mut(TRIG_BLOCK) {
            if all_below(c, $limit) {
                map_in_place!(c, $k);
            } else {
                for x in c.iter_mut() {
                    *x = if x.abs() < $limit { $k(*x) } else { $slow(*x) };
                }
            }
        }
    };
}

/// `out[i] = k(y[i], g[i])`.
macro_rules! zip_map {
    ($y:expr, $g:expr, $out:expr, $k:expr) => {
        for ((o, &y), &g) in $out.iter_mut().zip($y).zip($g) {
            *o = $k(y, g);
        }
    };
}

/// Defines `slice_body`, `in_place_body` and `grad_body` for one float type.
macro_rules! bodies {
    ($t:ty, $k:ident, $fma:expr) => {
        /// True if every |x| < limit (false for NaN); a branch-free reduction.
        #[inline(always)]
        fn all_below(xs: &[$t], limit: $t) -> bool {
            let mut all = true;
            for &x in xs {
                all &= x.abs() < limit;
            }
            all
        }

        #[inline(always)]
        pub(crate) fn slice_body(op: Op, input: &[$t], out: &mut [$t]) {
            const F: bool = $fma;
            match op {
                Op::Exp => map!(input, out, $k::exp::<F>),
                Op::Ln => map!(input, out, $k::ln::<F>),
                Op::Tanh => map!(input, out, $k::tanh::<F>),
                Op::Sigmoid => map!(input, out, $k::sigmoid::<F>),
                Op::Softplus => map!(input, out, $k::softplus::<F>),
                Op::Sqrt => map!(input, out, <$t>::sqrt),
                Op::Sin => map_trig!(input, out, $k::sin::<F>, <$t>::sin, $k::TRIG_LIMIT),
                Op::Cos => map_trig!(input, out, $k::cos::<F>, <$t>::cos, $k::TRIG_LIMIT),
            }
        }

        #[inline(always)]
        pub(crate) fn in_place_body(op: Op, data: &mut [$t]) {
            const F: bool = $fma;
            match op {
                Op::Exp => map_in_place!(data, $k::exp::<F>),
                Op::Ln => map_in_place!(data, $k::ln::<F>),
                Op::Tanh => map_in_place!(data, $k::tanh::<F>),
                Op::Sigmoid => map_in_place!(data, $k::sigmoid::<F>),
                Op::Softplus => map_in_place!(data, $k::softplus::<F>),
                Op::Sqrt => map_in_place!(data, <$t>::sqrt),
                Op::Sin => map_trig_in_place!(data, $k::sin::<F>, <$t>::sin, $k::TRIG_LIMIT),
                Op::Cos => map_trig_in_place!(data, $k::cos::<F>, <$t>::cos, $k::TRIG_LIMIT),
            }
        }

        #[inline(always)]
        pub(crate) fn grad_body(op: Grad, y: &[$t], g: &[$t], out: &mut [$t]) {
            const F: bool = $fma;
            match op {
                Grad::Tanh => zip_map!(y, g, out, $k::tanh_grad::<F>),
                Grad::Sigmoid => zip_map!(y, g, out, $k::sigmoid_grad::<F>),
            }
        }
    };
}

/// Whether the portable build may use `mul_add` (it must be an instruction,
/// not a libm call, or the loops stop vectorizing).
const PORTABLE_FMA: bool = cfg!(any(target_feature = "fma", target_arch = "aarch64"));

/// Loops compiled for the baseline target.
pub(crate) mod portable {
    use super::*;

    /// f32 loops.
    pub(crate) mod s {
        use super::*;
        bodies!(f32, f32k, PORTABLE_FMA);
    }
    /// f64 loops.
    pub(crate) mod d {
        use super::*;
        bodies!(f64, f64k, PORTABLE_FMA);
    }
}

/// The same loops compiled with AVX2 and FMA enabled.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::*;

    macro_rules! avx2_entry {
        ($m:ident, $t:ty, $k:ident) => {
            /// AVX2+FMA loops for this type.
            pub(crate) mod $m {
                use super::*;
                mod b {
                    use super::*;
                    bodies!($t, $k, true);
                }

                /// # Safety
                /// The CPU must support AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                pub(crate) unsafe fn slice(op: Op, input: &[$t], out: &mut [$t]) {
                    b::slice_body(op, input, out)
                }

                /// # Safety
                /// The CPU must support AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                pub(crate) unsafe fn in_place(op: Op, data: &mut [$t]) {
                    b::in_place_body(op, data)
                }

                /// # Safety
                /// The CPU must support AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                pub(crate) unsafe fn grad(op: Grad, y: &[$t], g: &[$t], out: &mut [$t]) {
                    b::grad_body(op, y, g, out)
                }
            }
        };
    }
    avx2_entry!(s, f32, f32k);
    avx2_entry!(d, f64, f64k);
}

/// True when the AVX2+FMA loops can run; detected once and cached (the std
/// macro also caches, but this keeps the hot-path check to one relaxed load).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let yes = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}

/// Without x86_64 there is only the portable build.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    false
}

/// Public-facing entry points: check lengths, then pick a backend.
macro_rules! entry {
    ($m:ident, $t:ty) => {
        /// Dispatching entry points for this type.
        pub(crate) mod $m {
            use super::*;

            pub(crate) fn slice(op: Op, input: &[$t], out: &mut [$t]) {
                assert_eq!(input.len(), out.len(), "vmath: input and output lengths differ");
                #[cfg(target_arch = "x86_64")]
                if has_avx2_fma() {
                    // SAFETY: AVX2 and FMA were detected at run time.
                    return unsafe { avx2::$m::slice(op, input, out) };
                }
                portable::$m::slice_body(op, input, out)
            }

            pub(crate) fn in_place(op: Op, data: &mut [$t]) {
                #[cfg(target_arch = "x86_64")]
                if has_avx2_fma() {
                    // SAFETY: AVX2 and FMA were detected at run time.
                    return unsafe { avx2::$m::in_place(op, data) };
                }
                portable::$m::in_place_body(op, data)
            }

            pub(crate) fn grad(op: Grad, y: &[$t], g: &[$t], out: &mut [$t]) {
                assert!(
                    y.len() == out.len() && g.len() == out.len(),
                    "vmath: y, g and out lengths differ"
                );
                #[cfg(target_arch = "x86_64")]
                if has_avx2_fma() {
                    // SAFETY: AVX2 and FMA were detected at run time.
                    return unsafe { avx2::$m::grad(op, y, g, out) };
                }
                portable::$m::grad_body(op, y, g, out)
            }
        }
    };
}

/// Dispatching entry points.
pub(crate) mod run {
    use super::*;
    entry!(s, f32);
    entry!(d, f64);
}
