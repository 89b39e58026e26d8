#!/usr/bin/env python3
"""Times the same computations in JAX (jit) and with `batchgraph bench`, in one
run on one machine, and prints the ratios batchgraph / JAX (below 1: batchgraph
is faster).

1. Train step of the MLP 16-64-64-1 of bench/mlp.graph (tanh, squared error):
   the gradient of the mean loss over B examples, against
   jax.jit(jax.grad(mean(vmap(loss)))), for each B in --sizes.
2. A 1024 x 1024 x 1024 matrix product (bench/matmul.graph), in GFLOP/s.
3. Per node on a chain of scalar tanh ops, forward and forward + backward
   (batchgraph only: JAX compiles the chain into one kernel): fused into one
   chain, as the interpreter runs it, and one op at a time (--no-fuse).

JAX runs with its default threads, and (unless --no-one-thread) again in a
subprocess limited to one thread. Needs a Python with JAX
(`python3 -m venv .venv-jax && .venv-jax/bin/pip install jax`) and a release
build (`cargo build --release`). Not used by the tests.

    .venv-jax/bin/python bench/compare_jax.py [--dtype f32|f64] [--sizes 1,16,256,4096]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ONE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def time_jax(fn, args, seconds):
    """Median, min and max microseconds of fn(*args), after warming up."""
    import jax

    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    while time.perf_counter() - start < seconds / 10:
        jax.block_until_ready(fn(*args))
    samples = []
    start = time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        samples.append((time.perf_counter() - t) * 1e6)
    return statistics.median(samples), min(samples), max(samples)


def jax_steps(dtype):
    """(time_step(B, seconds) -> median µs, time_matmul(seconds) -> median µs) in this process."""
    import jax
    import jax.numpy as jnp

    if dtype == "f64":
        jax.config.update("jax_enable_x64", True)
    dt = jnp.float32 if dtype == "f32" else jnp.float64
    key = jax.random.PRNGKey(0)
    ks = jax.random.split(key, 8)

    def u(k, shape):
        return jax.random.uniform(k, shape, dt, -1.0, 1.0)

    params = {
        "W1": u(ks[0], (64, 16)), "b1": u(ks[1], (64,)),
        "W2": u(ks[2], (64, 64)), "b2": u(ks[3], (64,)),
        "W3": u(ks[4], (1, 64)), "b3": u(ks[5], (1,)),
    }

    def loss(p, x, y):
        h1 = jnp.tanh(p["W1"] @ x + p["b1"])
        h2 = jnp.tanh(p["W2"] @ h1 + p["b2"])
        return jnp.sum((p["W3"] @ h2 + p["b3"] - y) ** 2)

    def batch_loss(p, x, y):
        return jnp.mean(jax.vmap(loss, (None, 0, 0))(p, x, y))

    step = jax.jit(jax.grad(batch_loss))

    def time_step(b, seconds):
        x, y = u(ks[6], (b, 16)), u(ks[7], (b, 1))
        return time_jax(step, (params, x, y), seconds)[0]

    def time_matmul(seconds):
        a, m = u(ks[0], (1024, 1024)), u(ks[1], (1024, 1024))
        return time_jax(jax.jit(jnp.matmul), (a, m), seconds)[0]

    return time_step, time_matmul


def jax_timings(dtype, sizes, seconds):
    """{"mlp": {B: median_us}, "matmul": median_us} measured in this process."""
    time_step, time_matmul = jax_steps(dtype)
    return {"mlp": {b: time_step(b, seconds) for b in sizes}, "matmul": time_matmul(seconds)}


def batchgraph(args, exe):
    """The JSON lines of `batchgraph bench ARGS --json`."""
    result = subprocess.run([exe, "bench", *args, "--json"], check=True, capture_output=True, text=True, cwd=ROOT)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def chain_graph(n):
    lines = ["input x: []", "let t1 = tanh(x)"]
    lines += [f"let t{i} = tanh(t{i - 1})" for i in range(2, n)]
    lines.append(f"out s = tanh(t{n - 1})")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.add_argument("--sizes", default="1,16,256,4096")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement")
    p.add_argument("--exe", default=os.path.join(ROOT, "target", "release", "batchgraph"))
    p.add_argument("--no-one-thread", action="store_true", help="skip the one-thread JAX run")
    p.add_argument("--jax-only", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    if a.jax_only:
        print(json.dumps(jax_timings(a.dtype, sizes, a.seconds)))
        return

    import jax

    print(f"# {platform.machine()}, {os.cpu_count()} cpus, JAX {jax.__version__}, dtype {a.dtype}", flush=True)
    time_step, time_matmul = jax_steps(a.dtype)
    jax_one = None
    if not a.no_one_thread:
        env = dict(os.environ, XLA_FLAGS=ONE_THREAD_FLAGS)
        cmd = [sys.executable, __file__, "--jax-only", "--dtype", a.dtype, "--sizes", a.sizes, "--seconds", str(a.seconds)]
        jax_one = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        jax_one["mlp"] = {int(k): v for k, v in jax_one["mlp"].items()}
    common = ["--dtype", a.dtype, "--seconds", str(a.seconds)]
    # Each size: JAX (default threads) then batchgraph, back to back, so that both
    # see the same load on a shared machine.
    jax_default, ours = {"mlp": {}}, []
    for b in sizes:
        jax_default["mlp"][b] = time_step(b, a.seconds)
        ours += batchgraph(["bench/mlp.graph", "--size", str(b), "--strategy", "fuse", "--grad", *common], a.exe)

    print("\nMLP 16-64-64-1 train step (gradient of the mean loss over B), median µs per step")
    head = "| B | batchgraph / JAX | batchgraph µs | JAX µs |"
    if jax_one:
        head += " batchgraph / JAX 1 thread | JAX 1 thread µs |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for row in ours:
        b = row["size"]
        line = f"| {b} | {row['median_us'] / jax_default['mlp'][b]:.2f} | {row['median_us']:.1f} | {jax_default['mlp'][b]:.1f} |"
        if jax_one:
            line += f" {row['median_us'] / jax_one['mlp'][b]:.2f} | {jax_one['mlp'][b]:.1f} |"
        print(line, flush=True)

    jax_default["matmul"] = time_matmul(a.seconds)
    mm = batchgraph(["bench/matmul.graph", *common], a.exe)[0]
    gflops = lambda us: 2 * 1024**3 / us / 1e3
    print("\n1024^3 matmul, GFLOP/s (median)")
    print(f"batchgraph {gflops(mm['median_us']):.1f}; JAX {gflops(jax_default['matmul']):.1f} "
          f"({jax_default['matmul'] / mm['median_us'] * 100:.0f}% of JAX)"
          + (f"; JAX 1 thread {gflops(jax_one['matmul']):.1f}" if jax_one else ""))

    n = 200
    with tempfile.NamedTemporaryFile("w", suffix=".graph", delete=False) as f:
        f.write(chain_graph(n))
    try:
        per_node = {}
        for how in ([], ["--no-fuse"]):
            fwd = batchgraph([f.name, *how, *common], a.exe)[0]
            both = batchgraph([f.name, "--grad", *how, *common], a.exe)[0]
            per_node[bool(how)] = (fwd["median_us"] * 1e3 / fwd["nodes"], both["median_us"] * 1e3 / fwd["nodes"])
    finally:
        os.unlink(f.name)
    print(f"\nchain of {n} scalar tanh ({fwd['nodes']} nodes), per node: "
          f"{per_node[False][0]:.0f} ns forward, {per_node[False][1]:.0f} ns forward + backward (fused into one chain); "
          f"one op at a time (--no-fuse): {per_node[True][0]:.0f} ns, {per_node[True][1]:.0f} ns")


if __name__ == "__main__":
    main()
