//! The walk-through runs (as `batchgraph demo --quick`), checks what it
//! claims, and writes its pictures and `summary.json`.

use serde_json::Value;

#[test]
fn quick_walk_through_checks_and_draws() {
    let dir = std::env::temp_dir().join(format!("batchgraph-demo-{}", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_batchgraph"))
        // The built-in profile, whatever `calibrate --save` left on this machine.
        .env("BATCHGRAPH_PROFILE", "/nonexistent/batchgraph-profile.json")
        .args(["demo", "--quick", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let differences = summary["gradient_differences"].as_array().unwrap();
    assert!(
        differences.iter().all(|d| d.as_f64().unwrap() < 1e-12),
        "{differences:?}"
    );
    let accumulation = summary["accumulation"].as_array().unwrap();
    assert!(
        accumulation.iter().all(|a| a["difference"].as_f64().unwrap() < 1e-12),
        "{accumulation:?}"
    );
    // Smaller passes hold less memory at once.
    let peaks: Vec<u64> = accumulation.iter().map(|a| a["peak_bytes"].as_u64().unwrap()).collect();
    assert!(peaks.windows(2).all(|w| w[1] < w[0]), "{peaks:?}");
    assert_eq!(summary["timings"].as_array().unwrap().len(), 5);
    // Section 6: the two-copy drawing, autobatched, proved equal, same values and gradients.
    let auto = &summary["autobatch"];
    assert!(auto["difference"].as_f64().unwrap() < 1e-12, "{auto}");
    assert!(auto["proof_steps"].as_u64().unwrap() > 0, "{auto}");
    let kernels = auto["kernels"].as_array().unwrap();
    assert!(kernels[1].as_u64().unwrap() < kernels[0].as_u64().unwrap(), "{auto}");
    let proof = std::fs::read_to_string(dir.join("two_copies_proof.txt")).unwrap();
    assert!(proof.contains("group-sum"), "{proof}");
    for name in [
        "seed.svg",
        "seed_b2_unrolled.svg",
        "seed_b2_fused.svg",
        "time_per_example.svg",
        "two_copies_side_by_side.svg",
    ] {
        let svg = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(svg.contains("<svg"), "{name}");
    }
    for section in [
        "== 1.",
        "== 2.",
        "== 3.",
        "== 4.",
        "CSE saved 5",
        "mean(stack(",
        "x @ transpose(w)",
        "Pictures written to",
    ] {
        assert!(text.contains(section), "missing {section:?} in\n{text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
