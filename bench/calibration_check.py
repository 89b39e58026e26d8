#!/usr/bin/env python3
"""Whether calibrating is quick and repeatable, with the command line only (a
release build: `cargo build --release`; standard Python).

Runs `batchgraph calibrate` twice (its wall time each), then batches every
example at every size, for the forward run and the gradient, with each of the
two profiles (`batch --profile FILE --for RUN --report`), and compares the plan
each profile picks. Prints the calibration times, every term that moved by
more than 10% between the two runs, and every configuration whose pick
differs.

    python3 bench/calibration_check.py [--sizes 1,2,...] [--out DIR]
"""

import argparse
import glob
import json
import os
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "batchgraph")
SIZES = "1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192"


def calibrate(path):
    start = time.monotonic()
    done = subprocess.run([BIN, "calibrate"], capture_output=True, text=True, check=True, cwd=ROOT)
    seconds = time.monotonic() - start
    with open(path, "w") as f:
        f.write(done.stdout)
    return json.loads(done.stdout), seconds


def flatten(profile, prefix=""):
    for key, value in profile.items():
        if isinstance(value, dict):
            yield from flatten(value, prefix + key + ".")
        elif isinstance(value, (int, float)):
            yield prefix + key, value


def pick(example, size, run, profile, scratch):
    report = os.path.join(scratch, "report.json")
    done = subprocess.run(
        [BIN, "batch", example, "--size", str(size), "--for", run, "--profile", profile, "--report", report],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        return None  # no such run (a gradient needs one scalar output)
    with open(report) as f:
        return json.load(f)["chosen"]["name"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default=SIZES)
    parser.add_argument("--out", help="keep the two profiles here")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp()
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, f"profile_{i}.json") for i in (1, 2)]
    (first, s1), (second, s2) = calibrate(paths[0]), calibrate(paths[1])
    print(f"calibrate: {s1:.1f} s, then {s2:.1f} s (wall time of `batchgraph calibrate`)")
    terms = dict(flatten(second))
    moved = [
        (k, a, terms[k])
        for k, a in flatten(first)
        if k in terms and max(abs(a), abs(terms[k])) > 0 and abs(a - terms[k]) > 0.1 * max(abs(a), abs(terms[k]))
    ]
    print(f"terms that moved by more than 10%: {len(moved)} of {len(terms)}")
    for k, a, b in moved:
        print(f"  {k}: {a:.4g} -> {b:.4g}")
    sizes = [int(s) for s in args.sizes.split(",")]
    examples = sorted(glob.glob(os.path.join(ROOT, "examples", "*.graph")))
    configurations, differ = 0, []
    with tempfile.TemporaryDirectory() as scratch:
        for example in examples:
            name = os.path.splitext(os.path.basename(example))[0]
            for size in sizes:
                for run in ("eval", "grad"):
                    picks = [pick(example, size, run, p, scratch) for p in paths]
                    if picks[0] is None and picks[1] is None:
                        continue
                    configurations += 1
                    if picks[0] != picks[1]:
                        differ.append((name, size, run, picks))
    print(f"configurations: {configurations}; the two profiles pick the same plan in {configurations - len(differ)}")
    for name, size, run, (a, b) in differ:
        print(f"  {name} B = {size} {run}: {a} / {b}")


if __name__ == "__main__":
    main()
