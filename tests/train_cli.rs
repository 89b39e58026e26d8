//! `batchgraph train` and `batchgraph noise-scale` as a user runs them: the
//! digits reach 95% held out, seeded runs repeat, training resumes from the
//! params it wrote, bad data leaves nothing in `--out`, the step program
//! prints as a program that parses back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn batchgraph(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchgraph"))
        .env("BATCHGRAPH_PROFILE", "/nonexistent/batchgraph-profile.json")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("batchgraph-train-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn train(out: &Path, extra: &[&str]) -> Output {
    let out = out.display().to_string();
    let mut args = vec![
        "train",
        "examples/digits.graph",
        "--data",
        "data/digits/train.npz",
        "--held-out",
        "data/digits/held_out.npz",
        "--batch",
        "32",
        "--out",
        &out,
    ];
    args.extend(extra);
    batchgraph(&args)
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn digits_reach_95_percent_held_out_and_the_same_seed_repeats() {
    let dir = scratch("digits");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for out in [&a, &b] {
        let o = train(out, &["--epochs", "10", "--lr", "0.01", "--seed", "4"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("held-out: loss"), "{}", text(&o.stdout));
    }
    let s = summary(&a);
    let accuracy = s["final"]["held_out"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy}");
    assert_eq!(s["steps"], 440);
    assert_eq!(s["plan"], "fused");
    assert_eq!(
        std::fs::read(a.join("params.npz")).unwrap(),
        std::fs::read(b.join("params.npz")).unwrap(),
        "the same seed gave other params"
    );
    assert!(std::fs::read_to_string(a.join("loss.svg")).unwrap().starts_with("<svg"));
    // Nothing but the two outputs is left beside them (no partial folders).
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn training_resumes_from_the_params_it_wrote() {
    let dir = scratch("resume");
    let out = dir.join("run");
    let o = train(&out, &["--steps", "30", "--optimizer", "sgd"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let first = summary(&out)["final"]["train"]["loss"].as_f64().unwrap();
    let init = out.join("params.npz").display().to_string();
    // Into the same folder: it is replaced whole.
    let o = train(&out, &["--steps", "30", "--optimizer", "sgd", "--init", &init]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let second = summary(&out)["final"]["train"]["loss"].as_f64().unwrap();
    assert!(second < first, "resumed training went from {first} to {second}");
    assert_eq!(summary(&out)["init"], init);
}

#[test]
fn bad_data_fails_before_training_and_writes_nothing() {
    let dir = scratch("bad");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "x_0,y_0\n1,0\n").unwrap();
    let out = dir.join("out");
    let o = batchgraph(&[
        "train",
        "examples/digits.graph",
        "--data",
        &bad.display().to_string(),
        "--batch",
        "4",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no column `x_1` for the input `x: [64]`"),
        "{}",
        text(&o.stderr)
    );
    assert!(!out.exists(), "--out was made for a run that failed");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "something was left beside the data"
    );
}

#[test]
fn zero_steps_or_epochs_are_refused() {
    let dir = scratch("zero");
    for length in [["--steps", "0"], ["--epochs", "0"]] {
        let o = train(&dir.join("out"), &length);
        assert_eq!(o.status.code(), Some(1), "{length:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("nothing to train"), "{}", text(&o.stderr));
        assert!(!dir.join("out").exists());
    }
}

#[test]
fn an_out_folder_holding_other_files_is_refused_up_front() {
    let dir = scratch("foreign");
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let o = train(&dir, &["--steps", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("holds `notes.txt`, which train did not write"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
}

#[test]
fn the_step_program_prints_and_parses_back() {
    for plan in [
        &["--optimizer", "adam"][..],
        &["--optimizer", "momentum", "--micro-batch", "2"],
    ] {
        let mut args = vec![
            "train",
            "examples/digits.graph",
            "--data",
            "data/digits/train.npz",
            "--batch",
            "4",
            "--print-step",
        ];
        args.extend(plan);
        let o = batchgraph(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let printed = text(&o.stdout);
        let program = batchgraph::Program::parse("step", &printed).unwrap();
        let outputs: Vec<&str> = program.outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(outputs[..5], ["loss", "new_W1", "new_b1", "new_W2", "new_b2"]);
        assert_eq!(program.to_text(), printed);
    }
}

#[test]
fn noise_scale_reports_b_simple_as_json() {
    let dir = scratch("noise");
    let params = dir.join("params.json");
    // W1 and W2 nonzero, so that every layer has a gradient.
    let program =
        batchgraph::parse_file(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.graph"))).unwrap();
    let values = batchgraph::train::random_params(&program, 1);
    let named: Vec<(String, batchgraph::Tensor<f64>)> = values.into_iter().collect();
    std::fs::write(&params, batchgraph::named_to_json(&named).to_string()).unwrap();
    let o = batchgraph(&[
        "noise-scale",
        "examples/digits.graph",
        "--data",
        "data/digits/held_out.npz",
        "--params",
        &params.display().to_string(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (b, tr, g2) = (
        json["b_simple"].as_f64().unwrap(),
        json["tr_sigma"].as_f64().unwrap(),
        json["g_norm2"].as_f64().unwrap(),
    );
    assert!(g2 > 0.0 && tr > 0.0 && (b - tr / g2).abs() <= 1e-12 * b);
    assert_eq!(json["examples"], 360);
    assert_eq!(json["two_batch"]["batches"], 5);
    assert!(json["two_batch"]["standard_error"].as_f64().unwrap() > 0.0);
}
