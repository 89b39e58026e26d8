#!/usr/bin/env python3
"""Measures what `batchgraph autobatch` finds and what it is worth, with the
command line only (a release build: `cargo build --release`; standard Python).

0. The two-copy drawing's gradient run: as written, autobatched, and
   `batch --strategy fuse` of the per-example program (seed.graph) at B = 2.
1. Written-out copies fed back in: `batch --strategy unroll --expand` output of
   examples/seed.graph and examples/mlp3.graph at B = 2, 8 and 64, autobatched
   (priced for the gradient), against `batch --strategy fuse` of the
   per-example program: kernels (ops that compute) and matmuls of each, and the
   gradient run of each timed with `batchgraph bench --grad`.
2. The grid: N written-out copies of tanh(W @ x_i), N in {2, 8, 64}, hidden
   size h in {4, 16, 128, 1024}, forward run: the copies as written and every
   group batched (`autobatch --all`), timed interleaved, and whether
   `autobatch`'s pick is the faster one (a pick within 5% of the faster
   counts as right).
3. Greedy against exact extraction on every program of 1 and 2 and the
   two-copy drawing: the DAG cost each finds, the time each takes, how exact
   extraction ended, and the cost model's price of each one's program. No
   timing runs: `--extraction-only` prints this part alone.

Each timing runs the two (or three) programs compared in turn, `--passes`
times (the order alternating), and keeps each one's best median: on a shared
machine a spell of load then falls on both sides alike.

    python3 bench/autobatch_check.py [--seconds 0.5] [--passes 3] [--parts two,written,grid,extraction]
                                     [--out DIR] [--json OUT.json] [--extraction-only]
"""

import argparse
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "batchgraph")


def run(args, out=None):
    done = subprocess.run([BIN] + args, capture_output=True, text=True, check=True, cwd=ROOT)
    if out:
        with open(out, "w") as f:
            f.write(done.stdout)
    return done


def bench(path, seconds, grad=False):
    args = ["bench", path, "--json", "--seconds", str(seconds)] + (["--grad"] if grad else [])
    return json.loads(run(args).stdout.strip().splitlines()[-1])["median_us"]


def best_of_interleaved(paths, seconds, passes, grad=False):
    """Each program's best median over `passes` passes, the programs timed in
    turn within each pass (the order alternating between passes), so that a
    spell of load on the shared machine falls on both sides alike."""
    best = [float("inf")] * len(paths)
    for p in range(passes):
        order = list(range(len(paths)))
        if p % 2:
            order.reverse()
        for i in order:
            best[i] = min(best[i], bench(paths[i], seconds, grad))
    return best


def counts(path):
    text = open(path).read()
    return text.count("@")


def written_out(out, seconds, passes):
    rows = []
    print("written-out copies, autobatched, against batch --strategy fuse (gradient runs, µs):")
    for example in ["seed", "mlp3"]:
        for size in [2, 8, 64]:
            source = f"examples/{example}.graph"
            expanded = os.path.join(out, f"{example}_{size}.graph")
            auto = os.path.join(out, f"{example}_{size}.autobatched.graph")
            fused = os.path.join(out, f"{example}_{size}.fused.graph")
            report = os.path.join(out, f"{example}_{size}.report.json")
            run(["batch", source, "--size", str(size), "--strategy", "unroll", "--expand"], expanded)
            run(["autobatch", expanded, "--report", report], auto)
            run(["batch", source, "--size", str(size), "--strategy", "fuse"], fused)
            r = json.load(open(report))
            fused_report = os.path.join(out, f"{example}_{size}.fused.report.json")
            run(["autobatch", fused, "--report", fused_report])
            fused_kernels = json.load(open(fused_report))["kernels_before"]
            t_auto, t_fused = best_of_interleaved([auto, fused], seconds, passes, grad=True)
            row = dict(example=example, size=size, kernels_written=r["kernels_before"], kernels_autobatched=r["kernels_after"],
                       kernels_fused=fused_kernels, matmuls_autobatched=counts(auto), matmuls_fused=counts(fused),
                       autobatched_us=t_auto, fused_us=t_fused, autobatch_seconds=r["seconds"])
            rows.append(row)
            print(f"  {example:5} B = {size:>2}: kernels {r['kernels_before']:>4} -> {r['kernels_after']:>3} (fused plan {fused_kernels:>3}), "
                  f"matmuls {counts(auto)} (fused {counts(fused)}); {t_auto:7.1f} µs against {t_fused:7.1f} ({t_auto / t_fused:.2f}x); "
                  f"autobatch took {r['seconds'] * 1000:.0f} ms", flush=True)
    return rows


def grid(out, seconds, passes):
    rows = []
    print("the grid: N copies of tanh(W @ x_i), forward runs (µs):")
    for n in [2, 8, 64]:
        for h in [4, 16, 128, 1024]:
            lines = [f"input x{i}: [{h}]" for i in range(n)] + [f"param W: [{h}, {h}]"]
            lines += [f"out y{i} = tanh(W @ x{i})" for i in range(n)]
            path = os.path.join(out, f"copies_{n}_{h}.graph")
            open(path, "w").write("\n".join(lines) + "\n")
            batched = os.path.join(out, f"copies_{n}_{h}.batched.graph")
            run(["autobatch", path, "--for", "eval", "--all"], batched)
            report = os.path.join(out, f"copies_{n}_{h}.report.json")
            run(["autobatch", path, "--for", "eval", "--report", report])
            r = json.load(open(report))
            apart, together = best_of_interleaved([path, batched], seconds, passes)
            picks_batched = r["groups_taken"] > 0
            close = abs(apart - together) / min(apart, together) < 0.05
            right = close or picks_batched == (together < apart)
            rows.append(dict(copies=n, hidden=h, apart_us=apart, batched_us=together, picks_batched=picks_batched,
                             predicted_apart_us=r["cost_before_us"], predicted_picked_us=r["cost_after_us"], right=right))
            print(f"  {n:>2} copies, h = {h:>4}: apart {apart:8.1f}, batched {together:8.1f}; picks "
                  f"{'batched' if picks_batched else 'apart':7} {'right' if right else 'WRONG'}{' (within 5%)' if close else ''}",
                  flush=True)
    print(f"  {sum(r['right'] for r in rows)} of {len(rows)} picks are the faster (or within 5% of it)")
    return rows


def two_copies(out, seconds, passes):
    """The two-copy drawing's gradient run: as written, autobatched, and
    `batch --strategy fuse` of the per-example program (seed.graph) at B = 2."""
    auto = os.path.join(out, "two_copies.autobatched.graph")
    fused = os.path.join(out, "seed_2.fused.graph")
    run(["autobatch", "examples/two_copies.graph"], auto)
    run(["batch", "examples/seed.graph", "--size", "2", "--strategy", "fuse"], fused)
    written, batched, fuse = best_of_interleaved(["examples/two_copies.graph", auto, fused], seconds, passes, grad=True)
    print(f"the two-copy drawing, gradient runs (µs): as written {written:.1f}, autobatched {batched:.1f}, "
          f"batch --strategy fuse of seed.graph at B = 2 {fuse:.1f} (autobatched / fuse = {batched / fuse:.2f})", flush=True)
    return dict(written_us=written, autobatched_us=batched, fused_us=fuse)


def extraction(out):
    rows = []
    print("greedy against exact extraction (DAG cost: the sum of the chosen nodes' costs, each once):")
    cases = [("two copies", "examples/two_copies.graph", "grad")]
    for example in ["seed", "mlp3"]:
        for size in [2, 8, 64]:
            expanded = os.path.join(out, f"{example}_{size}.graph")
            run(["batch", f"examples/{example}.graph", "--size", str(size), "--strategy", "unroll", "--expand"], expanded)
            cases.append((f"{example} B = {size}", expanded, "grad"))
    for n in [2, 8, 64]:
        for h in [4, 16, 128, 1024]:
            path = os.path.join(out, f"copies_{n}_{h}.graph")
            lines = [f"input x{i}: [{h}]" for i in range(n)] + [f"param W: [{h}, {h}]"]
            open(path, "w").write("\n".join(lines + [f"out y{i} = tanh(W @ x{i})" for i in range(n)]) + "\n")
            cases.append((f"grid {n} x h={h}", path, "eval"))
    print(f"  {'program':16} {'nodes':>6} {'greedy':>8} {'(ms)':>7} {'exact':>8} {'(ms)':>7}  {'status':10} "
          f"{'greedy plan µs':>14} {'exact plan µs':>13}")
    for name, path, run_for in cases:
        report = os.path.join(out, name.replace(" ", "_").replace("=", "") + ".extraction.json")
        run(["autobatch", path, "--for", run_for, "--report", report])
        r = json.load(open(report))
        e = r["extraction"]
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"
        rows.append(dict(program=name, run=run_for, egraph_nodes=r["egraph_nodes"], greedy_plan_us=r["greedy_cost_us"], **e))
        print(f"  {name:16} {e['exact_nodes']:>6} {fmt(e['greedy_dag_cost'], '8.3f')} {e['greedy_seconds'] * 1e3:7.2f} "
              f"{fmt(e['exact_dag_cost'], '8.3f')} {e['exact_seconds'] * 1e3:7.2f}  {e['exact_status']:10} "
              f"{fmt(r['greedy_cost_us'], '14.1f')} {fmt(e['exact_predicted_us'], '13.1f')}", flush=True)
    lower = sum(1 for r in rows if r["exact_dag_cost"] is not None and r["exact_dag_cost"] < r["greedy_dag_cost"] - 1e-9)
    optimal = sum(1 for r in rows if r["exact_status"] == "optimal")
    print(f"  exact proved optimal on {optimal} of {len(rows)}; below greedy on {lower}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--out", default=None, help="folder for the programs and reports (default: a temporary one)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--extraction-only", action="store_true", help="only part 3 (no timing runs)")
    parser.add_argument("--passes", type=int, default=3, help="timing passes; each side's best median is kept")
    parser.add_argument("--parts", default="two,written,grid,extraction",
                        help="comma-separated parts to run: two (the two-copy drawing), written, grid, extraction")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="autobatch-check-")
    os.makedirs(out, exist_ok=True)
    parts = ["extraction"] if args.extraction_only else args.parts.split(",")
    result = {}
    if "two" in parts:
        result["two_copies"] = two_copies(out, args.seconds, args.passes)
    if "written" in parts:
        result["written_out"] = written_out(out, args.seconds, args.passes)
    if "grid" in parts:
        result["grid"] = grid(out, args.seconds, args.passes)
    if "extraction" in parts:
        result["extraction"] = extraction(out)
    if args.json:
        json.dump(result, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
