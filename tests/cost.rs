//! The cost model: what it prices as the runtime runs it (views, rows,
//! element size, threads), and the check of its predictions against the clock.

use batchgraph::{
    cost_check, predict_us, summarize, Batcher, CostCheckOptions, CostProfile, Dtype, Program, Run, Strategy,
};
use std::time::Duration;

fn parse(text: &str) -> Program {
    Program::parse("test.graph", text).unwrap()
}

fn cpu(program: &Program, run: Run) -> f64 {
    predict_us(&CostProfile::cpu(), program, run, Dtype::F64)
}

/// A transpose that a matmul reads is a strided view, not a copy: it costs
/// what the product without it costs; read by anything else, it is copied.
#[test]
fn a_transpose_read_by_a_matmul_is_free() {
    let viewed = parse("input x: [64]\nparam W: [64, 64]\nout y = sum(transpose(W) @ x)");
    let plain = parse("input x: [64]\nparam W: [64, 64]\nout y = sum(W @ x)");
    for run in [Run::Eval, Run::Grad] {
        assert_eq!(cpu(&viewed, run), cpu(&plain, run), "{run:?}");
    }
    let copied = parse("param W: [64, 64]\nout y = sum(transpose(W))");
    let summed = parse("param W: [64, 64]\nout y = sum(W)");
    assert!(cpu(&copied, Run::Eval) > cpu(&summed, Run::Eval));
}

/// A loop's row reads one row, so a loop costs B times its body, not B^2.
#[test]
fn a_loop_costs_its_body_once_per_row() {
    let seed = parse(include_str!("../examples/seed.graph"));
    let looped = |b: usize| {
        Batcher::new(&seed)
            .size(b)
            .strategy(Strategy::Unroll)
            .run()
            .unwrap()
            .program
    };
    for run in [Run::Eval, Run::Grad] {
        let (small, large) = (cpu(&looped(64), run), cpu(&looped(4096), run));
        let ratio = large / small;
        assert!((60.0..68.0).contains(&ratio), "{run:?}: 64x the rows cost {ratio:.1}x");
    }
}

/// An op sending cotangents to two operands pays the second at
/// `backward_operand_us`, in the main sweep and in a loop body alike: a second
/// cotangent shares the op's dispatch.
#[test]
fn a_second_cotangent_is_priced_apart_from_the_op() {
    let with = |us: f64, program: &Program| {
        let profile = CostProfile {
            backward_operand_us: us,
            ..CostProfile::cpu()
        };
        predict_us(&profile, program, Run::Grad, Dtype::F64)
    };
    // `a * b` sends two cotangents, `sum` one: one second cotangent per run.
    let product = parse("param a: [4]\nparam b: [4]\nout s = sum(a * b)");
    assert!((with(1.0, &product) - with(0.0, &product) - 1.0).abs() < 1e-9);
    // A literal operand gets no cotangent.
    let scaled = parse("param a: [4]\nout s = sum(a * 2)");
    assert_eq!(with(1.0, &scaled), with(0.0, &scaled));
    // In a loop of 8 rows, `r * a` sends two each row.
    let looped = parse("input x: [8, 4]\nparam a: [4]\nlet r = row(x)\nout s = sum(map(sum(r * a), 8))");
    assert!((with(1.0, &looped) - with(0.0, &looped) - 8.0).abs() < 1e-9);
}

/// A structural op (a copy that moves data) pays `structural_op_us` rather than
/// an elementwise op's `op_us`: on small values it costs about twice as much
/// (its result's layout is worked out axis by axis). A profile saved before
/// the term existed reads the built-in value.
#[test]
fn a_structural_op_is_priced_at_its_own_overhead() {
    let with = |us: f64, program: &Program| {
        let profile = CostProfile {
            structural_op_us: us,
            ..CostProfile::cpu()
        };
        predict_us(&profile, program, Run::Eval, Dtype::F64)
    };
    let copied = parse("input x: [2, 1, 4]\nout y = sum(permute(x, 1, 0, 2) * 2)");
    assert!((with(1.0, &copied) - with(0.0, &copied) - 1.0).abs() < 1e-9);
    let elementwise = parse("input x: [2, 1, 4]\nout y = sum(x * 2)");
    assert_eq!(with(1.0, &elementwise), with(0.0, &elementwise));
    let mut saved = serde_json::to_value(CostProfile::cpu()).unwrap();
    saved.as_object_mut().unwrap().remove("structural_op_us");
    let read: CostProfile = serde_json::from_value(saved).unwrap();
    assert_eq!(read, CostProfile::cpu());
}

/// A reduction along an axis folds every element in turn: its price grows
/// with the elements at `fold_ns` each, whichever axis it folds.
#[test]
fn a_reduction_along_an_axis_pays_for_each_element_folded() {
    let with = |ns: f64, program: &Program| {
        let profile = CostProfile {
            fold_ns: ns,
            ..CostProfile::cpu()
        };
        predict_us(&profile, program, Run::Eval, Dtype::F64)
    };
    for axis in [0, 1] {
        let reduced = parse(&format!("input a: [100, 10]\nout s = sum(a, {axis})"));
        let extra = with(1.0, &reduced) - with(0.0, &reduced);
        assert!(
            (extra - 1.0).abs() < 1e-9,
            "axis {axis}: 1,000 elements at 1 ns cost {extra} µs more"
        );
    }
}

/// f32 elements move half the bytes and run faster products: a large program costs less in f32.
#[test]
fn the_element_type_is_priced() {
    let mlp3 = parse(include_str!("../examples/mlp3.graph"));
    let fused = Batcher::new(&mlp3)
        .size(4096)
        .strategy(Strategy::Fuse)
        .run()
        .unwrap()
        .program;
    let profile = CostProfile::cpu();
    let (f32, f64) = (
        predict_us(&profile, &fused, Run::Grad, Dtype::F32),
        predict_us(&profile, &fused, Run::Grad, Dtype::F64),
    );
    assert!(f32 < 0.8 * f64, "f32 {f32:.1} µs, f64 {f64:.1} µs");
}

/// Passes and products past the runtime's thresholds run on its threads; smaller ones do not.
#[test]
fn threads_speed_up_only_what_the_runtime_splits() {
    let one_core = CostProfile {
        thread_speedup: 1.0,
        gemm_thread_speedup: 1.0,
        ..CostProfile::cpu()
    };
    let two_cores = CostProfile {
        thread_speedup: 2.0,
        gemm_thread_speedup: 2.0,
        ..CostProfile::cpu()
    };
    let predict = |profile: &CostProfile, text: &str| predict_us(profile, &parse(text), Run::Eval, Dtype::F32);
    for large in [
        "input a: [1048576]\nout c = tanh(a) * 2",
        "input a: [512, 512]\ninput b: [512, 512]\nout c = a @ b",
    ] {
        assert!(predict(&two_cores, large) < 0.7 * predict(&one_core, large), "{large}");
    }
    for small in [
        "input a: [1024]\nout c = tanh(a) * 2",
        "input a: [64, 64]\ninput b: [64, 64]\nout c = a @ b",
    ] {
        assert_eq!(predict(&two_cores, small), predict(&one_core, small), "{small}");
    }
}

/// The batcher prices the run and the element type it is told, and the plan it reports costs what `predict_us` says.
#[test]
fn the_batcher_prices_the_run_it_is_told() {
    let mlp = parse(include_str!("../examples/mlp.graph"));
    for (run, dtype) in [(Run::Eval, Dtype::F32), (Run::Grad, Dtype::F64)] {
        let batched = Batcher::new(&mlp).size(64).price_for(run).dtype(dtype).run().unwrap();
        let expected = predict_us(&CostProfile::cpu(), &batched.program, run, dtype);
        assert_eq!(batched.report.chosen.cost, expected);
    }
}

/// The check prices and times every plan; each configuration names a plan it timed as chosen and as fastest.
#[test]
fn the_cost_check_times_every_plan() {
    let seed = parse(include_str!("../examples/seed.graph"));
    let options = CostCheckOptions {
        sizes: vec![1, 64],
        runs: vec![Run::Eval, Run::Grad],
        dtype: Dtype::F32,
        budget: Duration::from_millis(5),
        passes: 2,
        profile: CostProfile::cpu(),
    };
    let checks = cost_check(&[("seed".into(), seed)], &options, |_| {}).unwrap();
    assert_eq!(checks.len(), 4);
    for c in &checks {
        let names: Vec<&str> = c.plans.iter().map(|p| p.plan.as_str()).collect();
        assert_eq!(names, ["fused", "mixed", "loop"], "{} B = {}", c.example, c.size);
        assert!(names.contains(&c.chosen.as_str()) && names.contains(&c.fastest.as_str()));
        assert!(c.regret >= 0.0);
        for p in &c.plans {
            assert!(
                p.measured_us > 0.0 && p.predicted_us > 0.0 && p.ratio.is_finite(),
                "{p:?}"
            );
        }
    }
    let summary = summarize(&checks);
    assert_eq!((summary.configurations, summary.plans), (4, 12));
}

/// Calibration gives a profile of this machine that describes a machine.
#[test]
fn calibration_measures_every_term() {
    let profile = batchgraph::calibrate().unwrap();
    assert_eq!(profile.validate(), Ok(()));
    assert!(profile.op_us > 0.0 && profile.loop_op_us > 0.0, "{profile:?}");
    assert!(profile.gemm_flops_per_us.f64 > 100.0, "{profile:?}");
}

/// The backward of `index` (and `slice`) is priced as the runtime runs it:
/// one pass adding the cotangent into its window of the operand's cotangent.
/// Past the first (which fills the operand's zeros), sending a cotangent
/// through a row costs the same however many rows the operand has; running
/// the transpose rule instead pads it to the whole operand and adds that.
#[test]
fn a_cotangent_through_an_index_is_priced_by_its_row_not_the_operand() {
    let second_row_us = |rows: usize, dtype: Dtype| {
        let program = parse(&format!(
            "param t: [{rows}, 1000]\nout s = sum(index(t, 0)) + sum(index(t, 1) * 2)"
        ));
        let times = batchgraph::predict_times(&CostProfile::cpu(), &program, Run::Grad, dtype);
        // The backward sweep reaches index(t, 1) first (it comes later in the program): the second is index(t, 0).
        let rows: Vec<usize> = (0..program.node_count())
            .filter(|&i| program.window(i.into()).is_some())
            .collect();
        assert_eq!(rows.len(), 2, "{}", program.to_text());
        times.backward_us[rows[0]]
    };
    for dtype in [Dtype::F32, Dtype::F64] {
        let (few, many) = (second_row_us(2, dtype), second_row_us(256, dtype));
        assert!(
            few > 0.0 && (many - few).abs() < 1e-9,
            "{dtype:?}: {few} against {many} µs"
        );
    }
}
