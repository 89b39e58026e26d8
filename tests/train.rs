//! Training (`src/train/`): the step program against the gradient program and
//! the update computed by hand, against optax (JAX) on the same numbers, over
//! plans (fused and micro-batches); the data loaders' checks; seeded runs;
//! the noise scale against a direct computation on a hand-computable model.

use batchgraph::train::{
    noise_scale, random_params, read_params, train, write_params, Dataset, Evaluator, Length, Optimizer, Plan, Step,
    StepOptions, Trainer,
};
use batchgraph::{grad, parse_file, Batcher, Error, Interpreter, Program, Rng, Strategy, Tensor, Values};
use ndarray::IxDyn;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn digits_model() -> Program {
    parse_file(&root().join("examples/digits.graph")).unwrap()
}

fn digits(file: &str) -> Dataset {
    let (model, _) = batchgraph::train::loss_program(&digits_model(), None).unwrap();
    Dataset::load(&model, &root().join("data/digits").join(file)).unwrap()
}

fn options(batch: usize, plan: Plan, optimizer: Optimizer) -> StepOptions {
    StepOptions {
        batch,
        plan,
        optimizer,
        loss: None,
    }
}

/// The largest difference relative to max(1, |expected|).
fn difference(actual: &Tensor<f64>, expected: &Tensor<f64>) -> f64 {
    assert_eq!(actual.shape(), expected.shape());
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs() / e.abs().max(1.0))
        .fold(0.0, f64::max)
}

fn largest_difference(actual: &Values<f64>, expected: &Values<f64>) -> f64 {
    assert_eq!(actual.len(), expected.len());
    expected
        .iter()
        .map(|(n, e)| difference(&actual[n], e))
        .fold(0.0, f64::max)
}

fn json_tensor(v: &Value) -> Tensor<f64> {
    batchgraph::tensor_from_json("reference", v).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("batchgraph-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The update of one optimizer written out in plain Rust, element by element.
struct HandOptimizer {
    optimizer: Optimizer,
    lr: f64,
    first: Values<f64>,
    second: Values<f64>,
    t: i32,
}

impl HandOptimizer {
    fn step(&mut self, params: &mut Values<f64>, grads: &Values<f64>) {
        self.t += 1;
        for (name, p) in params.iter_mut() {
            let g = &grads[name];
            let m = self
                .first
                .entry(name.clone())
                .or_insert_with(|| Tensor::zeros(g.raw_dim()));
            let v = self
                .second
                .entry(name.clone())
                .or_insert_with(|| Tensor::zeros(g.raw_dim()));
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                match self.optimizer {
                    Optimizer::Sgd => *p -= self.lr * g,
                    Optimizer::Momentum { mu } => {
                        *m = mu * *m + g;
                        *p -= self.lr * *m;
                    }
                    Optimizer::Adam { b1, b2, eps } => {
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        let m_hat = *m / (1.0 - b1.powi(self.t));
                        let v_hat = *v / (1.0 - b2.powi(self.t));
                        *p -= self.lr * m_hat / (v_hat.sqrt() + eps);
                    }
                }
            }
        }
    }
}

/// The mean gradient over `batch` by the gradient program, batched (independently of the step program).
fn gradient_by_program(model: &Program, params: &Values<f64>, batch: Values<f64>, size: usize) -> (f64, Values<f64>) {
    let names: Vec<String> = model.params.iter().map(|d| d.name.clone()).collect();
    let gradient = grad(model, Some(&names)).unwrap();
    let batched = Batcher::new(&gradient)
        .size(size)
        .strategy(Strategy::Fuse)
        .run()
        .unwrap()
        .program;
    let mut values = batch;
    values.extend(params.clone());
    let outputs = Interpreter::new(&batched).evaluate(&values).unwrap().outputs;
    let grads = names
        .iter()
        .cloned()
        .zip(outputs[1..].iter().map(|(_, g)| g.clone()))
        .collect();
    (outputs[0].1.sum(), grads)
}

#[test]
fn a_training_step_equals_the_gradient_program_and_the_update_by_hand() {
    let model = digits_model();
    let data = digits("train.npz");
    for (optimizer, lr) in [
        (Optimizer::Sgd, 0.1),
        (Optimizer::MOMENTUM, 0.05),
        (Optimizer::ADAM, 0.01),
    ] {
        for plan in [Plan::Fused, Plan::MicroBatch(3)] {
            let step = Step::build(&model, &options(8, plan, optimizer)).unwrap();
            let start = random_params(&step.model, 3);
            let mut trainer = Trainer::new(&step, start.clone(), lr);
            let mut hand_params = start;
            let mut hand = HandOptimizer {
                optimizer,
                lr,
                first: Values::new(),
                second: Values::new(),
                t: 0,
            };
            let mut worst = 0.0f64;
            for k in 0..4 {
                let indices: Vec<usize> = (8 * k..8 * k + 8).collect();
                let loss = trainer.step(data.rows(&indices)).unwrap();
                let (hand_loss, grads) = gradient_by_program(&step.model, &hand_params, data.rows(&indices), 8);
                hand.step(&mut hand_params, &grads);
                worst = worst
                    .max((loss - hand_loss).abs())
                    .max(largest_difference(&trainer.params, &hand_params));
            }
            assert!(
                worst < 1e-12,
                "{} ({plan:?}): the step program differs from the hand computation by {worst:e}",
                optimizer.name()
            );
        }
    }
}

#[test]
fn optimizers_match_optax_on_the_same_numbers() {
    let reference: Value =
        serde_json::from_str(include_str!("reference/optimizers.json")).expect("tests/reference/optimizers.json");
    let program = Program::parse("optimizers.json", reference["program"].as_str().unwrap()).unwrap();
    let batch = reference["batch"].as_u64().unwrap() as usize;
    let named = |v: &Value| -> Values<f64> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(n, t)| (n.clone(), json_tensor(t)))
            .collect()
    };
    for (name, optimizer) in [
        ("sgd", Optimizer::Sgd),
        ("momentum", Optimizer::MOMENTUM),
        ("adam", Optimizer::ADAM),
    ] {
        let run = &reference["runs"][name];
        let step = Step::build(&program, &options(batch, Plan::Fused, optimizer)).unwrap();
        let mut trainer = Trainer::new(&step, named(&reference["init"]), run["lr"].as_f64().unwrap());
        for (k, (data, expected)) in reference["batches"]
            .as_array()
            .unwrap()
            .iter()
            .zip(run["steps"].as_array().unwrap())
            .enumerate()
        {
            let loss = trainer.step(named(data)).unwrap();
            let expected_loss = expected["loss"].as_f64().unwrap();
            let d = largest_difference(&trainer.params, &named(&expected["params"]));
            assert!(
                d < 1e-10 && (loss - expected_loss).abs() < 1e-10,
                "{name}, step {}: params differ from optax's by {d:e}, loss {loss} against {expected_loss}",
                k + 1
            );
        }
    }
}

/// One epoch of digits from `seed`, with Adam.
fn one_epoch(seed: u64) -> Values<f64> {
    let step = Step::build(&digits_model(), &options(32, Plan::Fused, Optimizer::ADAM)).unwrap();
    let data = digits("train.npz");
    let mut trainer = Trainer::new(&step, random_params(&step.model, seed), 0.003);
    train(&mut trainer, &data, Length::Epochs(1), seed + 1, |_, _| Ok(())).unwrap();
    trainer.params
}

#[test]
fn the_same_seed_gives_the_same_params_and_another_seed_others() {
    let (a, b, c) = (one_epoch(5), one_epoch(5), one_epoch(6));
    assert_eq!(a, b, "two runs from seed 5 differ");
    assert_ne!(a, c, "seeds 5 and 6 gave the same params");
}

#[test]
fn digits_train_past_95_percent_held_out() {
    let step = Step::build(&digits_model(), &options(32, Plan::Fused, Optimizer::ADAM)).unwrap();
    let (data, held_out) = (digits("train.npz"), digits("held_out.npz"));
    let mut trainer = Trainer::new(&step, random_params(&step.model, 0), 0.01);
    train(&mut trainer, &data, Length::Epochs(10), 1, |_, _| Ok(())).unwrap();
    let evaluator = Evaluator::new(&digits_model(), "loss", Some("logits"), held_out.len).unwrap();
    let metrics = evaluator.evaluate(&trainer.params, &held_out).unwrap();
    let accuracy = metrics.accuracy.unwrap();
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy} after 10 epochs");
}

#[test]
fn params_written_read_back_equal() {
    let step = Step::build(&digits_model(), &options(4, Plan::Fused, Optimizer::Sgd)).unwrap();
    let params = random_params(&step.model, 9);
    let dir = temp_dir("params");
    write_params(&step.model, &params, &dir.join("params.npz")).unwrap();
    assert_eq!(read_params(&step.model, &dir.join("params.npz")).unwrap(), params);
    // The JSON values format too.
    let json = batchgraph::named_to_json(&params.iter().map(|(n, t)| (n.clone(), t.clone())).collect::<Vec<_>>());
    std::fs::write(dir.join("params.json"), json.to_string()).unwrap();
    // (serde_json's parsing may be off by an ulp: no `float_roundtrip`.)
    let d = largest_difference(&read_params(&step.model, &dir.join("params.json")).unwrap(), &params);
    assert!(d < 1e-15, "{d:e}");
}

/// The error loading `contents` written to `file` as data for digits.graph.
fn load_error(file: &str, write: impl FnOnce(&Path)) -> String {
    let dir = temp_dir(&format!("bad-{}", file.replace('.', "-")));
    let path = dir.join(file);
    write(&path);
    let (model, _) = batchgraph::train::loss_program(&digits_model(), None).unwrap();
    match Dataset::load(&model, &path) {
        Ok(_) => panic!("{file}: loaded"),
        Err(e) => e.to_string(),
    }
}

fn write_npz(path: &Path, arrays: &[(&str, Tensor<f64>)]) {
    let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(path).unwrap());
    for (name, a) in arrays {
        npz.add_array(*name, a).unwrap();
    }
    npz.finish().unwrap();
}

fn zeros(shape: &[usize]) -> Tensor<f64> {
    Tensor::zeros(IxDyn(shape))
}

#[test]
fn bad_data_is_refused_up_front_with_a_clear_error() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "missing array",
            load_error("a.npz", |p| write_npz(p, &[("x", zeros(&[5, 64]))])),
            "no array `y` for the input `y: [10]` (it has `x`)",
        ),
        (
            "wrong shape",
            load_error("b.npz", |p| {
                write_npz(p, &[("x", zeros(&[5, 63])), ("y", zeros(&[5, 10]))])
            }),
            "`x` has shape [5, 63]; the input `x: [64]` needs [examples, 64]",
        ),
        (
            "different counts",
            load_error("c.npz", |p| {
                write_npz(p, &[("x", zeros(&[5, 64])), ("y", zeros(&[4, 10]))])
            }),
            "`y` has 4 examples but `x` has 5",
        ),
        (
            "NaN",
            load_error("d.npz", |p| {
                let mut x = zeros(&[5, 64]);
                x[[3, 7]] = f64::NAN;
                write_npz(p, &[("x", x), ("y", zeros(&[5, 10]))])
            }),
            "`x` holds NaN (example 3, element 7): training data must be finite",
        ),
        (
            "no examples",
            load_error("e.npz", |p| {
                write_npz(p, &[("x", zeros(&[0, 64])), ("y", zeros(&[0, 10]))])
            }),
            "no examples",
        ),
        (
            "empty file",
            load_error("f.csv", |p| std::fs::write(p, "").unwrap()),
            "empty file (no header line)",
        ),
        (
            "empty npz",
            load_error("g.npz", |p| std::fs::write(p, "").unwrap()),
            "not a readable .npz",
        ),
        (
            "missing column",
            load_error("h.csv", |p| std::fs::write(p, "x_0,y_0\n1,2\n").unwrap()),
            "no column `x_1` for the input `x: [64]`",
        ),
        (
            "not a number",
            load_error("i.csv", |p| {
                let header: Vec<String> = (0..64)
                    .map(|k| format!("x_{k}"))
                    .chain((0..10).map(|k| format!("y_{k}")))
                    .collect();
                let mut row = vec!["0"; 74];
                row[70] = "seven";
                std::fs::write(p, format!("{}\n{}\n", header.join(","), row.join(","))).unwrap()
            }),
            "i.csv:2: column `y_6`: `seven` is not a number",
        ),
        (
            "a 10 GB file",
            load_error("j.npz", |p| {
                std::fs::File::create(p).unwrap().set_len(10_000_000_000).unwrap()
            }),
            "10000000000 bytes is more than the 2147483648 bytes (2 GiB) the data may have",
        ),
        (
            "other format",
            load_error("k.txt", |p| std::fs::write(p, "1").unwrap()),
            "data must be .npz",
        ),
    ];
    for (what, error, expected) in cases {
        assert!(
            error.contains(expected),
            "{what}: the error was `{error}`, expected `{expected}`"
        );
    }
}

#[test]
fn csv_and_npz_of_the_same_examples_load_equal() {
    let data = digits("held_out.npz");
    let header: Vec<String> = (0..64)
        .map(|k| format!("x_{k}"))
        .chain((0..10).map(|k| format!("y_{k}")))
        .collect();
    let mut text = header.join(",") + "\n";
    let rows = data.rows(&(0..20).collect::<Vec<_>>());
    for i in 0..20 {
        let cells: Vec<String> = rows["x"]
            .index_axis(ndarray::Axis(0), i)
            .iter()
            .chain(rows["y"].index_axis(ndarray::Axis(0), i).iter())
            .map(|v| format!("{v:?}"))
            .collect();
        text += &(cells.join(",") + "\n");
    }
    let dir = temp_dir("csv");
    std::fs::write(dir.join("d.csv"), text).unwrap();
    let (model, _) = batchgraph::train::loss_program(&digits_model(), None).unwrap();
    let csv = Dataset::load(&model, &dir.join("d.csv")).unwrap();
    assert_eq!(csv.len, 20);
    assert_eq!(csv.all(), rows);
}

#[test]
fn a_step_with_too_few_examples_or_no_params_is_refused() {
    let step = Step::build(&digits_model(), &options(2000, Plan::Fused, Optimizer::Sgd)).unwrap();
    let data = digits("held_out.npz");
    let mut trainer = Trainer::new(&step, random_params(&step.model, 0), 0.1);
    let error = train(&mut trainer, &data, Length::Epochs(1), 0, |_, _| Ok(())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the batch is 2000 examples but the data has only 360"
    );
    let no_params = Program::parse("p", "input x: [2]\nout loss = sum(x * x)\n").unwrap();
    let error = Step::build(&no_params, &options(2, Plan::Fused, Optimizer::Sgd)).unwrap_err();
    assert!(matches!(error, Error::Unsupported(_)), "{error}");
    let two_losses = Program::parse("p", "input x: [2]\nparam w: [2]\nout a = sum(w * x)\nout b = sum(w)\n").unwrap();
    let error = Step::build(&two_losses, &options(2, Plan::Fused, Optimizer::Sgd)).unwrap_err();
    assert!(error.to_string().contains("name it with --loss"), "{error}");
}

/// The per-example gradients of `loss = (w * x + c - y)^2`, by hand: d/dw = 2 r x, d/dc = 2 r.
#[test]
fn the_noise_scale_equals_a_direct_computation_on_a_linear_model() {
    let program = Program::parse(
        "linear",
        "input x: []\ninput y: []\nparam w: []\nparam c: []\nout loss = (w * x + c - y) ^ 2\n",
    )
    .unwrap();
    let (w, c) = (0.7, -0.2);
    let mut rng = Rng::new(11);
    let n = 40;
    let xs: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let ys: Vec<f64> = xs.iter().map(|x| 0.3 * x + 0.5 + rng.uniform(-0.3, 0.3)).collect();
    let arrays: Values<f64> = [
        (
            "x".to_string(),
            Tensor::from_shape_vec(IxDyn(&[n]), xs.clone()).unwrap(),
        ),
        (
            "y".to_string(),
            Tensor::from_shape_vec(IxDyn(&[n]), ys.clone()).unwrap(),
        ),
    ]
    .into();
    let data = Dataset::new(&program, "linear", arrays).unwrap();
    let params: Values<f64> = [
        ("w".to_string(), Tensor::from_elem(IxDyn(&[]), w)),
        ("c".to_string(), Tensor::from_elem(IxDyn(&[]), c)),
    ]
    .into();
    let per_example: Vec<[f64; 2]> = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| {
            let r = w * x + c - y;
            [2.0 * r * x, 2.0 * r]
        })
        .collect();
    let mean = |v: &[[f64; 2]]| {
        let k = v.len() as f64;
        [
            v.iter().map(|g| g[0]).sum::<f64>() / k,
            v.iter().map(|g| g[1]).sum::<f64>() / k,
        ]
    };
    let norm2 = |g: [f64; 2]| g[0] * g[0] + g[1] * g[1];
    let g = mean(&per_example);
    let tr_sigma = per_example
        .iter()
        .map(|e| norm2([e[0] - g[0], e[1] - g[1]]))
        .sum::<f64>()
        / (n - 1) as f64;
    // Two-batch estimator, B_big = 8: per batch, the unbiased |G|^2 = |mean|^2 - S / B, S the batch's sample variance.
    let (mut g_sum, mut s_sum) = (0.0, 0.0);
    for batch in per_example.chunks(8) {
        let m = mean(batch);
        let s = batch.iter().map(|e| norm2([e[0] - m[0], e[1] - m[1]])).sum::<f64>() / 7.0;
        g_sum += norm2(m) - s / 8.0;
        s_sum += s;
    }
    let scale = noise_scale(&program, None, &params, &data, 8).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    assert!(
        close(scale.g_norm2, norm2(g)),
        "|G|^2 {} against {}",
        scale.g_norm2,
        norm2(g)
    );
    assert!(
        close(scale.tr_sigma, tr_sigma),
        "tr(Sigma) {} against {tr_sigma}",
        scale.tr_sigma
    );
    assert!(close(scale.b_simple, tr_sigma / norm2(g)));
    let two = scale.two_batch.expect("5 batches of 8");
    assert_eq!((two.b_small, two.b_big, two.batches), (1, 8, 5));
    assert!(
        close(two.g_norm2, g_sum / 5.0),
        "{} against {}",
        two.g_norm2,
        g_sum / 5.0
    );
    assert!(close(two.tr_sigma, s_sum / 5.0));
    assert!(close(two.b_simple, s_sum / g_sum));
    assert!(two.standard_error > 0.0 && two.standard_error.is_finite());
}

/// The two-batch estimate of B_simple is unbiased in its parts: over many
/// draws of data whose per-example gradients have a known mean and
/// covariance, the mean estimates of |G|^2 and tr(Sigma) approach the true ones.
#[test]
fn the_two_batch_estimates_approach_the_true_values() {
    // loss = (w - y)^2 at w = 0: the gradient -2 y; y uniform in [0.5, 1.5]: G = -2, Sigma = 4 / 12.
    let program = Program::parse("mean", "input y: []\nparam w: []\nout loss = (w - y) ^ 2\n").unwrap();
    let params: Values<f64> = [("w".to_string(), Tensor::from_elem(IxDyn(&[]), 0.0))].into();
    let mut rng = Rng::new(5);
    let (mut g2, mut s, draws) = (0.0, 0.0, 200);
    for _ in 0..draws {
        let ys: Vec<f64> = (0..16).map(|_| rng.uniform(0.5, 1.5)).collect();
        let data = Dataset::new(
            &program,
            "draw",
            [("y".to_string(), Tensor::from_shape_vec(IxDyn(&[16]), ys).unwrap())].into(),
        )
        .unwrap();
        let two = noise_scale(&program, None, &params, &data, 4)
            .unwrap()
            .two_batch
            .unwrap();
        g2 += two.g_norm2 / draws as f64;
        s += two.tr_sigma / draws as f64;
    }
    assert!((g2 - 4.0).abs() < 0.02, "|G|^2 averaged {g2}, true 4");
    assert!((s - 1.0 / 3.0).abs() < 0.02, "tr(Sigma) averaged {s}, true 1/3");
}

#[test]
fn the_evaluator_counts_correct_classes() {
    // Scores equal to the labels: every example is right.
    let program = Program::parse(
        "p",
        "input x: [3]\ninput y: [3]\nparam w: []\nout logits = w * x\nout loss = sum((w * x - y) ^ 2)\n",
    )
    .unwrap();
    let x = Tensor::from_shape_vec(IxDyn(&[4, 3]), vec![1., 0., 0., 0., 1., 0., 0., 0., 1., 1., 0., 0.]).unwrap();
    let y = Tensor::from_shape_vec(IxDyn(&[4, 3]), vec![1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 1., 0.]).unwrap();
    let data = Dataset::new(&program, "p", [("x".to_string(), x), ("y".to_string(), y)].into()).unwrap();
    let evaluator = Evaluator::new(&program, "loss", Some("logits"), 4).unwrap();
    let params: Values<f64> = [("w".to_string(), Tensor::from_elem(IxDyn(&[]), 1.0))].into();
    let metrics = evaluator.evaluate(&params, &data).unwrap();
    assert_eq!(metrics.accuracy, Some(0.75));
    assert!((metrics.loss - 0.5).abs() < 1e-15, "{}", metrics.loss);
}

/// Issue 20, item 4 (bad data): an `.npz` whose array header declares a huge
/// shape (10 GB of f64) in a file of a few hundred bytes is refused from the
/// header, before any of it is read (not an allocation of 10 GB, nor a short read).
#[test]
fn an_npz_header_declaring_a_huge_array_is_refused_before_reading() {
    let error = load_error("huge.npz", |p| {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(p).unwrap());
        let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1250000000,), }".to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let options = zip::write::SimpleFileOptions::default();
        for name in ["x.npy", "y.npy"] {
            zip.start_file(name, options).unwrap();
            zip.write_all(b"\x93NUMPY\x01\x00").unwrap();
            zip.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
            zip.write_all(header.as_bytes()).unwrap();
            zip.write_all(&[0u8; 64]).unwrap();
        }
        zip.finish().unwrap();
    });
    assert!(
        error.contains("`x` declares shape [1250000000] of 8-byte elements: 10000000000 bytes"),
        "{error}"
    );
}
