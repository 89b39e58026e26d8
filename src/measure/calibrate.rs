//! Calibration: this machine's interpreter timed on small programs, one per
//! term of the cost model, as a [`CostProfile`]. Each term is a difference
//! or a slope between two timed programs that differ only in it (a chain of
//! 201 ops against one of 1: the per-op cost), so that what the programs
//! share cancels. It takes a few seconds.

use crate::egraph::{CostProfile, PerDtype};
use crate::error::Result;
use crate::front::parse_program;
use crate::ir::{Dtype, Program, Run, Scalar};
use crate::measure::timing::{time_runs, timed_interpreter, values_for};
use std::time::Duration;

/// Time spent timing each calibration program.
const BUDGET: Duration = Duration::from_millis(30);

/// The median µs of one run of `text` (fused unless `fuse` is false), in `dtype`.
fn timed(text: &str, run: Run, fuse: bool, dtype: Dtype) -> Result<f64> {
    let program = parse_program("calibrate", text).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    fn time<T: Scalar>(program: &Program, run: Run, fuse: bool) -> Result<f64> {
        Ok(time_runs(
            &timed_interpreter(program, fuse),
            &values_for::<T>(program),
            run,
            BUDGET,
        )?
        .median_us)
    }
    match dtype {
        Dtype::F32 => time::<f32>(&program, run, fuse),
        Dtype::F64 => time::<f64>(&program, run, fuse),
    }
}

/// The shape the chains' values have: small, as a per-example program's or a small batch's are.
const CHAIN_SHAPE: &str = "16, 4";
/// The elements of a [`CHAIN_SHAPE`] value.
const CHAIN_ELEMENTS: f64 = 64.0;

/// `t{0} = x * w`, then `n` more links `t{i} = t{i-1} * 0.999`, over `x: [16, 4]`.
fn chain(n: usize) -> String {
    let mut text = format!("input x: [{CHAIN_SHAPE}]\nparam w: []\nlet t0 = x * w\n");
    for i in 1..=n {
        text.push_str(&format!("let t{i} = t{} * 0.999\n", i - 1));
    }
    text.push_str(&format!("out y = sum(t{n})\n"));
    text
}

/// [`chain`] with each link's literal a param of its own: `n` more variables to look up.
fn chain_of_params(n: usize) -> String {
    let mut text = format!("input x: [{CHAIN_SHAPE}]\nparam w: []\nlet t0 = x * w\n");
    for i in 1..=n {
        text = format!("param p{i}: []\n") + &text + &format!("let t{i} = t{} * p{i}\n", i - 1);
    }
    text.push_str(&format!("out y = sum(t{n})\n"));
    text
}

/// [`chain`] whose links each multiply by one shared value `u`: every link
/// sends two cotangents (to the chain and to `u`), and `u` adds them up.
fn chain_of_two_operands(n: usize) -> String {
    let mut text = format!("input x: [{CHAIN_SHAPE}]\nparam w: []\nlet u = x * w\nlet t0 = u * 0.999\n");
    for i in 1..=n {
        text.push_str(&format!("let t{i} = t{} * u\n", i - 1));
    }
    text.push_str(&format!("out y = sum(t{n})\n"));
    text
}

/// The shape [`chain_of_copies`] copies: a few elements on three axes, as a small batch's stacked values have.
const COPY_SHAPE: &str = "2, 1, 4";
/// The elements of a [`COPY_SHAPE`] value.
const COPY_ELEMENTS: f64 = 8.0;

/// `t{0} = x * w` over `x: [2, 1, 4]`, then `n` structural links, alternately
/// `permute(t, 1, 0, 2)` and `reshape(t, 0, 2, 1, 4)`: copies that move data.
fn chain_of_copies(n: usize) -> String {
    let mut text = format!("input x: [{COPY_SHAPE}]\nparam w: []\nlet t0 = x * w\n");
    for i in 1..=n {
        let link = match i % 2 {
            1 => format!("permute(t{}, 1, 0, 2)", i - 1),
            _ => format!("reshape(t{}, 0, {COPY_SHAPE})", i - 1),
        };
        text.push_str(&format!("let t{i} = {link}\n"));
    }
    text.push_str(&format!("out y = sum(t{n})\n"));
    text
}

/// A loop over `rows` rows of 16 whose body is `row(x) * w` and `n` more links.
fn looped(rows: usize, n: usize) -> String {
    let mut text = format!("input x: [{rows}, 16]\nparam w: []\nlet r = row(x)\nlet t0 = r * w\n");
    for i in 1..=n {
        text.push_str(&format!("let t{i} = t{} * 0.999\n", i - 1));
    }
    text.push_str(&format!("out y = sum(map(t{n}, {rows}))\n"));
    text
}

/// `a @ b` for `a: [m, k]`, `b: [k, n]`.
fn product(m: usize, k: usize, n: usize) -> String {
    format!("input a: [{m}, {k}]\ninput b: [{k}, {n}]\nout c = a @ b\n")
}

/// Runs `f` on a pool of one thread.
fn on_one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a pool of one thread")
        .install(f)
}

/// How many times [`calibrate`] measures every term; it keeps each one's median.
const ROUNDS: usize = 5;

/// Measures this machine's interpreter and returns its profile, named `cpu
/// (calibrated)`: each term the median of [`ROUNDS`] measurements, so that
/// one disturbed timing does not move it.
pub fn calibrate() -> Result<CostProfile> {
    // A warm-up first: a processor that was idle runs its first timings slower.
    let warm = std::time::Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        timed(&chain(50), Run::Grad, false, Dtype::F64)?;
    }
    let rounds: Vec<serde_json::Value> = (0..ROUNDS)
        .map(|_| calibrate_once().map(|p| serde_json::to_value(p).expect("a profile serializes")))
        .collect::<Result<_>>()?;
    fn median(values: Vec<&serde_json::Value>) -> serde_json::Value {
        match values[0] {
            serde_json::Value::Object(first) => first
                .keys()
                .map(|k| (k.clone(), median(values.iter().map(|v| &v[k]).collect())))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            serde_json::Value::Number(_) => {
                let mut numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
                numbers.sort_by(f64::total_cmp);
                serde_json::json!(numbers[numbers.len() / 2])
            }
            other => other.clone(),
        }
    }
    let profile = median(rounds.iter().collect());
    serde_json::from_value(profile).map_err(|e| crate::error::Error::Internal(format!("calibration: {e}")))
}

/// One measurement of every term.
fn calibrate_once() -> Result<CostProfile> {
    let slope = |long: f64, short: f64, steps: f64| ((long - short) / steps).max(0.0);
    let (short, long) = (1, 201);
    // Ops on their own: a chain of scalar ops, unfused; the intercept is the run's own cost.
    let eval = [
        timed(&chain(short), Run::Eval, false, Dtype::F64)?,
        timed(&chain(long), Run::Eval, false, Dtype::F64)?,
    ];
    let grad = [
        timed(&chain(short), Run::Grad, false, Dtype::F64)?,
        timed(&chain(long), Run::Grad, false, Dtype::F64)?,
    ];
    // Each chain also sums its result: one op more.
    let op_us = slope(eval[1], eval[0], (long - short) as f64);
    let run_us = (eval[0] - (short + 2) as f64 * op_us).max(0.0);
    let op_and_back = slope(grad[1], grad[0], (long - short) as f64);
    let backward_op_us = (op_and_back - op_us).max(0.0);
    let grad_run_us = (grad[0] - run_us - (short + 2) as f64 * op_and_back).max(0.0);
    // Structural ops on their own: a chain of copies, unfused as they always run.
    let copies = [
        timed(&chain_of_copies(short), Run::Eval, false, Dtype::F64)?,
        timed(&chain_of_copies(long), Run::Eval, false, Dtype::F64)?,
    ];
    let copy_us = slope(copies[1], copies[0], (long - short) as f64);
    // A second operand's cotangent: the same links sending two cotangents each,
    // the shared operand adding them up (a pass over the chain's 64 elements).
    let two = |n| -> Result<[f64; 2]> {
        let text = chain_of_two_operands(n);
        Ok([
            timed(&text, Run::Eval, false, Dtype::F64)?,
            timed(&text, Run::Grad, false, Dtype::F64)?,
        ])
    };
    let (two_short, two_long) = (two(short)?, two(long)?);
    let links = (long - short) as f64;
    let back_of_two = slope(two_long[1], two_short[1], links) - slope(two_long[0], two_short[0], links);
    // Looking up a variable: the same chain with a param per link instead of a literal.
    let lookups = timed(&chain_of_params(long), Run::Eval, false, Dtype::F64)?;
    let var_us = slope(lookups, eval[1], long as f64);
    // The same chains fused: one group, its links.
    let fused = [
        timed(&chain(short), Run::Eval, true, Dtype::F64)?,
        timed(&chain(long), Run::Eval, true, Dtype::F64)?,
    ];
    let fused_step_us = slope(fused[1], fused[0], (long - short) as f64);
    let group_us = (fused[0] - run_us - op_us - (short + 1) as f64 * fused_step_us).max(0.0);
    // A loop's ops, per row: forward, and forward with backward (the loop feeds only the loss's sum).
    let (loop_short, loop_long) = (1, 21);
    let loop_eval = [
        timed(&looped(64, loop_short), Run::Eval, true, Dtype::F64)?,
        timed(&looped(64, loop_long), Run::Eval, true, Dtype::F64)?,
    ];
    let loop_grad = [
        timed(&looped(64, loop_short), Run::Grad, true, Dtype::F64)?,
        timed(&looped(64, loop_long), Run::Grad, true, Dtype::F64)?,
    ];
    let per_row_steps = 64.0 * (loop_long - loop_short) as f64;
    let loop_op_us = slope(loop_eval[1], loop_eval[0], per_row_steps);
    let loop_backward_op_us = (slope(loop_grad[1], loop_grad[0], per_row_steps) - loop_op_us).max(0.0);
    // A loop's own cost, per row (one row against 65, the body the same) and per run
    // (against the same two links on a [1, 16] value, unfused, without a loop).
    let rows = [
        timed(&looped(1, 1), Run::Eval, true, Dtype::F64)?,
        timed(&looped(65, 1), Run::Eval, true, Dtype::F64)?,
    ];
    let per_row = slope(rows[1], rows[0], 64.0);
    let loop_row_us = (per_row - 3.0 * loop_op_us).max(0.0);
    let flat = timed(
        "input x: [1, 16]\nparam w: []\nlet t0 = x * w\nlet t1 = t0 * 0.999\nout y = sum(t1)\n",
        Run::Eval,
        false,
        Dtype::F64,
    )?;
    let loop_run_us = (rows[0] - flat - per_row + 2.0 * op_us).max(0.0);
    // The GEMM: its call on a tiny product, its rate on one thread below the threads' threshold.
    let own = |t: f64| (t - run_us - op_us).max(1e-3);
    let tiny = |n: usize| {
        let mut text = String::from("input a: [4, 4]\nparam m: [4, 4]\nlet t0 = a @ m\n");
        for i in 1..=n {
            text.push_str(&format!("let t{i} = t{} @ m\n", i - 1));
        }
        text + &format!("out y = sum(t{n})\n")
    };
    let products = [
        timed(&tiny(short), Run::Eval, false, Dtype::F64)?,
        timed(&tiny(long), Run::Eval, false, Dtype::F64)?,
    ];
    let gemm_call_us = (slope(products[1], products[0], (long - short) as f64) - op_us).max(0.0);
    // Its rate and its cost per result row, solved from a thin product
    // (many rows, few multiply-adds each) and a square one.
    let gemm = |dtype| -> Result<(f64, f64)> {
        let (thin, square) = ((4096.0, 4.0, 4.0), (128.0, 128.0, 128.0));
        let t = |(m, k, n): (f64, f64, f64)| -> Result<(f64, f64, f64)> {
            let us = own(timed(
                &product(m as usize, k as usize, n as usize),
                Run::Eval,
                true,
                dtype,
            )?) - gemm_call_us;
            Ok((m, 2.0 * m * n * k, us.max(1e-3)))
        };
        let ((o1, f1, t1), (o2, f2, t2)) = (t(thin)?, t(square)?);
        // o * c + f * u = t for the two products: c µs per result row, u µs per flop.
        let det = o1 * f2 - o2 * f1;
        let c = ((t1 * f2 - t2 * f1) / det).max(0.0);
        let u = ((o1 * t2 - o2 * t1) / det).max(t2 / f2 / 10.0);
        Ok((1.0 / u, c * 1000.0))
    };
    let (f32_gemm, f64_gemm) = (gemm(Dtype::F32)?, gemm(Dtype::F64)?);
    let gemm_flops_per_us = PerDtype {
        f32: f32_gemm.0,
        f64: f64_gemm.0,
    };
    let gemm_row_ns = PerDtype {
        f32: f32_gemm.1,
        f64: f64_gemm.1,
    };
    // Bandwidth: adding arrays that fit in the cache, and arrays that do not.
    let cache_bytes = cache_size().unwrap_or(512 * 1024) as f64;
    let add = |n: usize, dtype| {
        timed(
            &format!("input a: [{n}]\ninput b: [{n}]\nout c = a + b\n"),
            Run::Eval,
            true,
            dtype,
        )
    };
    let small = 16384;
    let cache_bytes_per_us = 3.0 * 8.0 * small as f64 / own(add(small, Dtype::F64)?);
    // The second cotangent, beyond the first and the shared operand's adding up.
    let added_us = 3.0 * 8.0 * CHAIN_ELEMENTS / cache_bytes_per_us;
    let backward_operand_us = (back_of_two - backward_op_us - added_us).max(0.0);
    let f32_add_ns = own(add(small, Dtype::F32)?) * 1000.0 / small as f64;
    let cheap_ns = PerDtype {
        f32: (f32_add_ns - 3.0 * 4.0 / cache_bytes_per_us * 1000.0).max(0.0),
        f64: 0.0,
    };
    let large = (4.0 * cache_bytes / 8.0) as usize;
    let stream_bytes_per_us = 3.0 * 8.0 * large as f64 / own(add(large, Dtype::F64)?);
    // Transcendental ops: tanh over an array in cache, beyond its bytes.
    let tanh_ns = |dtype: Dtype| -> Result<f64> {
        let n = 16384;
        let bytes = 2.0 * n as f64 * dtype.bytes() as f64;
        let t = own(timed(
            &format!("input a: [{n}]\nout c = tanh(a)\n"),
            Run::Eval,
            true,
            dtype,
        )?);
        Ok(((t - bytes / cache_bytes_per_us) * 1000.0 / n as f64).max(0.0))
    };
    let transcendental_ns = PerDtype {
        f32: tanh_ns(Dtype::F32)?,
        f64: tanh_ns(Dtype::F64)?,
    };
    // Strided walks: a transpose copied, per element; lanes: a value per row subtracted, per row.
    let n = 128 * 128;
    let transposed = own(timed(
        "input a: [128, 128]\nout c = transpose(a)\n",
        Run::Eval,
        true,
        Dtype::F64,
    )?);
    let strided_ns = ((transposed - 2.0 * 8.0 * n as f64 / cache_bytes_per_us) * 1000.0 / n as f64).max(0.0);
    let rows = 8192;
    let per_row = own(timed(
        &format!("input a: [{rows}, 2]\ninput b: [{rows}, 1]\nout c = a - b\n"),
        Run::Eval,
        true,
        Dtype::F64,
    )?);
    let lane_ns = ((per_row - 5.0 * 8.0 * rows as f64 / cache_bytes_per_us) * 1000.0 / rows as f64).max(0.0);
    // Folding along an axis: a sum and a max over rows of 16, per element beyond its bytes.
    let fold = |r: &str| -> Result<f64> {
        let (rows, n) = (4096.0, 16.0);
        let t = own(timed(
            &format!("input a: [{rows}, {n}]\nout c = {r}(a, 1)\n"),
            Run::Eval,
            true,
            Dtype::F64,
        )?);
        Ok(((t - 8.0 * rows * (n + 1.0) / cache_bytes_per_us) * 1000.0 / (rows * n)).max(0.0))
    };
    let fold_ns = (fold("sum")? + fold("max")?) / 2.0;
    // A structural op beyond its strided walk (`Pass::strided_us` of its elements).
    let structural_op_us =
        (copy_us - COPY_ELEMENTS * strided_ns / 1000.0 - 2.0 * 8.0 * COPY_ELEMENTS / cache_bytes_per_us).max(0.0);
    // Threads: a long pass and a large product, on every thread against on one.
    let pass = "input a: [1048576]\nout c = tanh(a) * 0.5 + 0.25\n";
    let thread_speedup = (on_one_thread(|| timed(pass, Run::Eval, true, Dtype::F32))?
        / timed(pass, Run::Eval, true, Dtype::F32)?)
    .max(1.0);
    let big = product(384, 384, 384);
    let gemm_thread_speedup = (on_one_thread(|| timed(&big, Run::Eval, true, Dtype::F32))?
        / timed(&big, Run::Eval, true, Dtype::F32)?)
    .max(1.0);
    Ok(CostProfile {
        name: "cpu (calibrated)".into(),
        run_us,
        grad_run_us,
        var_us,
        op_us,
        structural_op_us,
        backward_op_us,
        backward_operand_us,
        group_us,
        fused_step_us,
        loop_run_us,
        loop_row_us,
        loop_op_us,
        loop_backward_op_us,
        gemm_call_us,
        cheap_ns,
        transcendental_ns,
        strided_ns,
        lane_ns,
        fold_ns,
        gemm_row_ns,
        gemm_flops_per_us,
        cache_bytes,
        cache_bytes_per_us,
        stream_bytes_per_us,
        thread_speedup,
        gemm_thread_speedup,
    })
}

/// The size of a core's L2 cache as the OS reports it (Linux), in bytes.
fn cache_size() -> Option<usize> {
    (0..8).find_map(|i| {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let level = std::fs::read_to_string(format!("{dir}/level")).ok()?;
        if level.trim() != "2" {
            return None;
        }
        let size = std::fs::read_to_string(format!("{dir}/size")).ok()?;
        let size = size.trim();
        let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
        let n: usize = digits.parse().ok()?;
        Some(match unit {
            "K" => n * 1024,
            "M" => n * 1024 * 1024,
            _ => n,
        })
    })
}
