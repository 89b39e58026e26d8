"""JAX reference values for reductions whose inputs tie (issue 21, item 3).

Writes tests/reference/tied_reductions.json: one case per reduction (sum, mean, max, min), per
example rank 1-4 and axis set (every axis, `r(e)`, or one axis, `r(e, k)`), for the program

    input x: dims
    param b: dims
    out s = sum(r(x + b))        (or sum(r(x + b, k)))

with integer-valued x and b drawn from {0, 1, 2} and {0, 1}, so that many elements tie. Each case
holds `program`, `reduction`, `axis` (null for every axis) and `batch` in the format of README.md
(size, over, inputs, per_example, mean, mean_grads, per_example_grads). JAX's max and min give each
tied element an equal share of the gradient.

Every program is written by hand below in jax.numpy (float64), independently of the Rust code.
To rerun, from the repository root:
    pip install jax
    python tests/reference/tied_reductions.py

The committed file was produced with jax 0.10.2 (float64).
"""

import json
import os

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

BATCH = 3
REDUCTIONS = {"sum": jnp.sum, "mean": jnp.mean, "max": jnp.max, "min": jnp.min}
SHAPES = [[4], [2, 3], [2, 2, 2], [2, 1, 2, 2]]


def case(name, dims, axis, rng):
    reduce = REDUCTIONS[name]

    def f(x, b):
        return jnp.sum(reduce(x + b, axis=axis))

    x = rng.integers(0, 3, size=[BATCH] + dims).astype(np.float64)
    b = rng.integers(0, 2, size=dims).astype(np.float64)
    per_example = jax.vmap(f, in_axes=(0, None))(x, b)
    grads = jax.vmap(jax.grad(f, argnums=(0, 1)), in_axes=(0, None))(x, b)
    mean_grads = jax.grad(lambda x, b: jnp.mean(jax.vmap(f, in_axes=(0, None))(x, b)), argnums=(0, 1))(x, b)
    call = f"{name}(x + b)" if axis is None else f"{name}(x + b, {axis})"
    shape = ", ".join(str(d) for d in dims)
    return {
        "program": f"input x: [{shape}]\nparam b: [{shape}]\nout s = sum({call})\n",
        "reduction": name,
        "axis": axis,
        "batch": {
            "size": BATCH,
            "over": ["x"],
            "inputs": {"x": x.tolist(), "b": b.tolist()},
            "per_example": np.asarray(per_example).tolist(),
            "mean": float(jnp.mean(per_example)),
            "mean_grads": {"x": np.asarray(mean_grads[0]).tolist(), "b": np.asarray(mean_grads[1]).tolist()},
            "per_example_grads": {"x": np.asarray(grads[0]).tolist(), "b": np.asarray(grads[1]).tolist()},
        },
    }


def main():
    rng = np.random.default_rng(21)
    cases = []
    for name in REDUCTIONS:
        for dims in SHAPES:
            for axis in [None] + list(range(len(dims))):
                cases.append(case(name, dims, axis, rng))
    path = os.path.join(os.path.dirname(__file__), "tied_reductions.json")
    with open(path, "w") as out:
        # One case a line.
        out.write('{"jax": %s, "cases": [\n' % json.dumps(jax.__version__))
        out.write(",\n".join(json.dumps(c) for c in cases))
        out.write("\n]}\n")


if __name__ == "__main__":
    main()
