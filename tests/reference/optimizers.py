"""Writes optimizers.json: training steps of a small program by JAX and optax, in float64.

For tests/train.rs, which runs the same steps through batchgraph's step program
(`batchgraph train`'s) and compares the params after each step. Run from the
repository root: `pip install jax optax`, then `python tests/reference/optimizers.py`.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

PROGRAM = """input x: [3]
input y: [2]
param W: [2, 3]
param b: [2]
out loss = sum((tanh(W @ x + b) - y) ^ 2)
"""
BATCH = 4
STEPS = 3


def loss(params, x, y):
    return jnp.sum((jnp.tanh(params["W"] @ x + params["b"]) - y) ** 2)


def mean_loss(params, xs, ys):
    return jnp.mean(jax.vmap(loss, in_axes=(None, 0, 0))(params, xs, ys))


def run(optimizer, params, batches):
    state = optimizer.init(params)
    steps = []
    for xs, ys in batches:
        value, grads = jax.value_and_grad(mean_loss)(params, xs, ys)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        steps.append({"loss": float(value), "params": {k: np.asarray(v).tolist() for k, v in params.items()}})
    return steps


def main():
    rng = np.random.default_rng(7)
    params = {"W": rng.uniform(-1, 1, (2, 3)), "b": rng.uniform(-1, 1, 2)}
    batches = [(rng.uniform(-1, 1, (BATCH, 3)), rng.uniform(-1, 1, (BATCH, 2))) for _ in range(STEPS)]
    runs = {
        "sgd": (0.1, optax.sgd(0.1)),
        "momentum": (0.1, optax.sgd(0.1, momentum=0.9)),
        "adam": (0.05, optax.adam(0.05)),
    }
    out = {
        "program": PROGRAM,
        "batch": BATCH,
        "init": {k: v.tolist() for k, v in params.items()},
        "batches": [{"x": xs.tolist(), "y": ys.tolist()} for xs, ys in batches],
        "runs": {name: {"lr": lr, "steps": run(opt, params, batches)} for name, (lr, opt) in runs.items()},
        "versions": {"jax": jax.__version__, "optax": optax.__version__},
    }
    with open("tests/reference/optimizers.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
