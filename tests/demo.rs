//! The walk-through runs, checks what it claims, and writes its pictures.

use batchgraph::{run_demo, DemoOptions};

#[test]
fn quick_walk_through_checks_and_draws() {
    let dir = std::env::temp_dir().join(format!("batchgraph-demo-{}", std::process::id()));
    let mut text = Vec::new();
    let summary = run_demo(
        &DemoOptions {
            out: dir.clone(),
            quick: true,
        },
        &mut text,
    )
    .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(summary.gradient_differences.0 < 1e-12 && summary.gradient_differences.1 < 1e-12);
    assert!(
        summary.accumulation.iter().all(|a| a.2 < 1e-12),
        "{:?}",
        summary.accumulation
    );
    // Smaller passes hold less memory at once.
    assert!(
        summary.accumulation.windows(2).all(|w| w[1].4 < w[0].4),
        "{:?}",
        summary.accumulation
    );
    assert_eq!(summary.timings.len(), 5);
    for name in [
        "seed.svg",
        "seed_b2_unrolled.svg",
        "seed_b2_fused.svg",
        "time_per_example.svg",
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
}
