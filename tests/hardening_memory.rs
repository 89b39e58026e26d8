//! Regression tests for issue 21's memory, crash and message items: each
//! runs the command (or the library function) as the report did.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Runs the command with its address space capped at `bytes`: a run that
/// needs more fails to allocate (and aborts) instead of swapping the machine.
fn batchgraph_within(bytes: u64, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_batchgraph"));
    command
        // The built-in profile, whatever `calibrate --save` left on this machine.
        .env("BATCHGRAPH_PROFILE", "/nonexistent/batchgraph-profile.json")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_AS, &limit) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    command.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `contents` to `name` in this test run's own folder and returns the path.
fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("batchgraph-hardening-memory-{}", std::process::id()));
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

/// The chain of the report: `let t{i} = sin(t{i-1}) * w + t{i-1}`, `steps` long.
fn chain(steps: usize) -> String {
    let mut text = String::from("input x: [3]\nparam w: [3]\nlet t0 = x\n");
    for i in 1..=steps {
        text.push_str(&format!("let t{i} = sin(t{}) * w + t{}\n", i - 1, i - 1));
    }
    text.push_str(&format!("out s = sum(t{steps})\n"));
    text
}

/// Item 6: extraction kept, per class, a copy of every class below it, so
/// memory grew with the square of the depth (5,000 steps took 6 GB, 10,000
/// aborted). Under a 1 GiB address space, 10,000 steps now batch at B = 4.
#[test]
fn batch_of_a_ten_thousand_step_chain_fits_in_a_gigabyte() {
    let file = temp_file("chain10000.graph", &chain(10_000));
    let report = temp_file("chain10000.json", "");
    let out = batchgraph_within(1 << 30, &["batch", &file, "--size", "4", "--report", &report]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // The fused plan: three ops a step.
    assert_eq!(report["chosen"]["name"], "fused");
    let nodes = report["chosen"]["nodes"].as_u64().unwrap();
    assert!((30_000..30_010).contains(&nodes), "{nodes} nodes");
}
