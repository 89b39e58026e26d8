"""JAX reference values where a derivative meets 0 or an infinite cotangent (issue 21).

Writes tests/reference/zero_derivatives.json:
- `pow`: the gradient of `a ^ b` w.r.t. `a` and `b` at every pair of a grid that holds 0 on both
  sides and a negative base. d/db is jax.grad of jnp.power: y * log(a) with a 0 base read as 1 (0,
  or NaN where y is infinite). d/da is jax.grad of `a ** b` with b a Python int where b is a whole
  number (JAX's integer_pow: 0 where b = 0, also at a = 0; a literal exponent such as `x ^ 2` or
  `x ^ 0` is written so), else of jnp.power.
- `programs`: programs in the graph language through `sign` or `step` (numpy's `x > 0`) under an
  infinite cotangent (`sqrt` at 0), with the gradient of each input: JAX's symbolic zero for these
  ops sends nothing back, so the gradient is 0, not inf * 0.

Every function is written by hand below in jax.numpy (float64), independently of the Rust code.
To rerun, from the repository root:
    pip install jax
    python tests/reference/zero_derivatives.py

The committed file was produced with jax 0.10.2 (float64).
"""

import json
import math
import os

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

GRID = [0.0, 0.75, 2.0, -1.0, -2.0]


def number(v):
    """JSON has no NaN or infinity: those are written as strings."""
    v = float(v)
    return v if math.isfinite(v) else str(v)


def step(x):
    return jnp.where(x > 0, 1.0, 0.0)


PROGRAMS = [
    ("input x: []\ninput z: []\nout s = sqrt(sign(x) + z)\n", lambda x, z: jnp.sqrt(jnp.sign(x) + z)),
    ("input x: []\ninput z: []\nout s = sqrt(step(x) + z)\n", lambda x, z: jnp.sqrt(step(x) + z)),
    ("input x: []\ninput z: []\nout s = sqrt(sign(sqrt(x)) + z)\n", lambda x, z: jnp.sqrt(jnp.sign(jnp.sqrt(x)) + z)),
    ("input x: []\ninput z: []\nout s = sqrt(step(sqrt(x)) + z)\n", lambda x, z: jnp.sqrt(step(jnp.sqrt(x)) + z)),
    ("input x: []\ninput z: []\nout s = sqrt(sign(x) * x + z)\n", lambda x, z: jnp.sqrt(jnp.sign(x) * x + z)),
]


def main():
    pow_cases = []
    for a in GRID:
        for b in GRID:
            da, db = jax.grad(jnp.power, argnums=(0, 1))(a, b)
            if b == int(b):
                da = jax.grad(lambda a: a ** int(b))(a)
            pow_cases.append({"a": a, "b": b, "y": number(jnp.power(a, b)), "da": number(da), "db": number(db)})
    programs = []
    for text, f in PROGRAMS:
        for x in [0.0, 1.0, -1.0]:
            gx, gz = jax.grad(f, argnums=(0, 1))(x, 0.0)
            programs.append({"program": text, "inputs": {"x": x, "z": 0.0}, "grads": {"x": number(gx), "z": number(gz)}})
    path = os.path.join(os.path.dirname(__file__), "zero_derivatives.json")
    with open(path, "w") as out:
        json.dump({"jax": jax.__version__, "pow": pow_cases, "programs": programs}, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
