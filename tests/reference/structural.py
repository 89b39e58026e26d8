"""JAX reference values for the structural ops `slice`, `concat` and `pad`.

Writes tests/reference/structural_<name>.json for each program ("slice", "concat", "pad", "mixed"),
each in the reference format described in tests/reference/README.md (program, inputs, output,
scalar, grads, tangents, jvp, batch).

Every program is written by hand below in jax.numpy (float64), independently of the Rust code.
Semantics (numpy):
  slice(e, axis, start, end)  = e[..., start:end, ...] along `axis`
  concat(a, b, ..., axis)     = numpy.concatenate([a, b, ...], axis)
  pad(e, axis, before, after) = numpy.pad with zeros, `before` before and `after` after along `axis`

To rerun, from the repository root:
    pip install jax
    python tests/reference/structural.py

The committed file was produced with jax 0.10.2 (jaxlib 0.10.2, numpy 2.4.6, Python 3.11.7).
"""

import json
import os

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

BATCH = 3


def slice_(e, axis, start, end):
    idx = [slice(None)] * e.ndim
    idx[axis] = slice(start, end)
    return e[tuple(idx)]


def concat(arrays, axis):
    return jnp.concatenate(arrays, axis=axis)


def pad(e, axis, before, after):
    widths = [(0, 0)] * e.ndim
    widths[axis] = (before, after)
    return jnp.pad(e, widths, mode="constant", constant_values=0.0)


# Each program: text, the ordered declarations (name, kind, shape), and the function of a dict of values.
PROGRAMS = {
    "slice": {
        "program": "input x: [4, 3]\nparam w: [3]\n"
        "out s = sum(tanh(slice(x, 0, 1, 3) * w) ^ 2) + sum(slice(x, 1, 2, 3) * slice(x, 1, 0, 1))\n",
        "decls": [("x", "input", (4, 3)), ("w", "param", (3,))],
        "fn": lambda v: jnp.sum(jnp.tanh(v["x"][1:3, :] * v["w"]) ** 2)
        + jnp.sum(v["x"][:, 2:3] * v["x"][:, 0:1]),
    },
    "concat": {
        "program": "input x: [2, 3]\nparam w: [1, 3]\nparam v: [2, 2]\n"
        "out s = sum(tanh(concat(x, w, x, 0)) ^ 2) + sum(concat(x, v, 1) * concat(v, x, 1))\n",
        "decls": [("x", "input", (2, 3)), ("w", "param", (1, 3)), ("v", "param", (2, 2))],
        "fn": lambda v: jnp.sum(jnp.tanh(jnp.concatenate([v["x"], v["w"], v["x"]], axis=0)) ** 2)
        + jnp.sum(jnp.concatenate([v["x"], v["v"]], axis=1) * jnp.concatenate([v["v"], v["x"]], axis=1)),
    },
    "pad": {
        "program": "input x: [2, 3]\nparam w: [2, 5]\n"
        "out s = sum(tanh(pad(x, 1, 1, 1) * w)) + sum(pad(x, 0, 2, 0) ^ 2)\n",
        "decls": [("x", "input", (2, 3)), ("w", "param", (2, 5))],
        "fn": lambda v: jnp.sum(jnp.tanh(jnp.pad(v["x"], ((0, 0), (1, 1))) * v["w"]))
        + jnp.sum(jnp.pad(v["x"], ((2, 0), (0, 0))) ** 2),
    },
    "mixed": {
        "program": "input x: [3]\nparam w: [4, 3]\n"
        "out s = sum(tanh(w @ pad(slice(x, 0, 1, 3), 0, 1, 0)) * "
        "concat(slice(x, 0, 0, 2), slice(x, 0, 1, 3), 0))\n",
        "decls": [("x", "input", (3,)), ("w", "param", (4, 3))],
        "fn": lambda v: jnp.sum(
            jnp.tanh(v["w"] @ jnp.pad(v["x"][1:3], (1, 0)))
            * jnp.concatenate([v["x"][0:2], v["x"][1:3]], axis=0)
        ),
    },
}

# The same programs through the generic helpers above (axis arguments as in the program text);
# used only as a cross-check of the hand-written functions.
GENERIC = {
    "slice": lambda v: jnp.sum(jnp.tanh(slice_(v["x"], 0, 1, 3) * v["w"]) ** 2)
    + jnp.sum(slice_(v["x"], 1, 2, 3) * slice_(v["x"], 1, 0, 1)),
    "concat": lambda v: jnp.sum(jnp.tanh(concat([v["x"], v["w"], v["x"]], 0)) ** 2)
    + jnp.sum(concat([v["x"], v["v"]], 1) * concat([v["v"], v["x"]], 1)),
    "pad": lambda v: jnp.sum(jnp.tanh(pad(v["x"], 1, 1, 1) * v["w"])) + jnp.sum(pad(v["x"], 0, 2, 0) ** 2),
    "mixed": lambda v: jnp.sum(
        jnp.tanh(v["w"] @ pad(slice_(v["x"], 0, 1, 3), 0, 1, 0))
        * concat([slice_(v["x"], 0, 0, 2), slice_(v["x"], 0, 1, 3)], 0)
    ),
}


def tolist(a):
    a = np.asarray(a, dtype=np.float64)
    return float(a) if a.ndim == 0 else a.tolist()


def build(name, spec, rng):
    decls, fn = spec["decls"], spec["fn"]
    names = [n for n, _, _ in decls]
    over = [n for n, kind, _ in decls if kind == "input"]

    inputs = {n: jnp.asarray(rng.uniform(-1.0, 1.0, size=shape)) for n, _, shape in decls}
    tangents = {n: jnp.asarray(rng.standard_normal(size=shape)) for n, _, shape in decls}
    batched = {
        n: (jnp.asarray(rng.uniform(-1.0, 1.0, size=(BATCH,) + shape)) if n in over else inputs[n])
        for n, _, shape in decls
    }

    out = fn(inputs)
    assert out.shape == (), (name, out.shape)
    assert np.allclose(out, GENERIC[name](inputs), rtol=1e-13, atol=0), name
    grads = jax.grad(fn)(inputs)
    _, jvp = jax.jvp(fn, (inputs,), (tangents,))
    # Forward and reverse mode must agree: <grad, tangent> == jvp.
    dot = sum(float(jnp.vdot(grads[n], tangents[n])) for n in names)
    assert np.isclose(dot, float(jvp), rtol=1e-12), (name, dot, float(jvp))
    # Central finite differences along the tangent as a sanity check.
    eps = 1e-6
    plus = fn({n: inputs[n] + eps * tangents[n] for n in names})
    minus = fn({n: inputs[n] - eps * tangents[n] for n in names})
    assert np.isclose((plus - minus) / (2 * eps), float(jvp), rtol=1e-6, atol=1e-8), name

    in_axes = ({n: (0 if n in over else None) for n in names},)
    per_example = jax.vmap(fn, in_axes=in_axes)(batched)
    assert per_example.shape == (BATCH,)
    # vmap must agree with a plain loop over the examples.
    for i in range(BATCH):
        single = {n: (batched[n][i] if n in over else batched[n]) for n in names}
        assert np.isclose(per_example[i], fn(single), rtol=1e-13, atol=0), name

    def mean_fn(values):
        return jnp.mean(jax.vmap(fn, in_axes=in_axes)(values))

    mean_grads = jax.grad(mean_fn)(batched)
    per_example_grads = jax.vmap(jax.grad(fn), in_axes=in_axes)(batched)
    for n in names:
        assert mean_grads[n].shape == batched[n].shape
        assert per_example_grads[n].shape == (BATCH,) + inputs[n].shape
        # Mean gradient of a shared param = mean of the per-example gradients; of a batched input = 1/size of it.
        expect = per_example_grads[n] / BATCH if n in over else jnp.mean(per_example_grads[n], axis=0)
        assert np.allclose(mean_grads[n], expect, rtol=1e-12, atol=1e-15), (name, n)

    return {
        "program": spec["program"],
        "inputs": {n: tolist(inputs[n]) for n in names},
        "output": tolist(out),
        "scalar": True,
        "grads": {n: tolist(grads[n]) for n in names},
        "tangents": {n: tolist(tangents[n]) for n in names},
        "jvp": tolist(jvp),
        "batch": {
            "size": BATCH,
            "over": over,
            "inputs": {n: tolist(batched[n]) for n in names},
            "per_example": tolist(per_example),
            "mean": tolist(jnp.mean(per_example)),
            "sum": tolist(jnp.sum(per_example)),
            "mean_grads": {n: tolist(mean_grads[n]) for n in names},
            "per_example_grads": {n: tolist(per_example_grads[n]) for n in names},
        },
    }


def main():
    rng = np.random.default_rng(0)
    result = {name: build(name, spec, rng) for name, spec in PROGRAMS.items()}
    here = os.path.dirname(os.path.abspath(__file__))
    for name, entry in result.items():
        path = os.path.join(here, f"structural_{name}.json")
        with open(path, "w") as f:
            json.dump(entry, f, indent=1)
        print(f"{name}: output = {entry['output']!r}; wrote {path}")
    print(f"jax {jax.__version__}")


if __name__ == "__main__":
    main()
