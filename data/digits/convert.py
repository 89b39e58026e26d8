"""Converts scikit-learn's copy of the digits data into train.npz and held_out.npz.

Run once (the outputs are committed; nothing reads this at run time):

    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn numpy
    /tmp/skvenv/bin/python data/digits/convert.py

Each file holds one array per input of examples/digits.graph, named as the input, the
leading axis the examples: `x` [N, 64] (the 8x8 image, row by row, pixel counts 0..16
divided by 16, float64) and `y` [N, 10] (the label one-hot, float64). The split is fixed:
a permutation of the 1,797 examples from seed 0, the first 1,437 (80%) to train.npz,
the other 360 to held_out.npz.
"""

import pathlib

import numpy as np
from sklearn.datasets import load_digits

HERE = pathlib.Path(__file__).resolve().parent
TRAIN = 1437


def main():
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = np.eye(10, dtype=np.float64)[digits.target]
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    np.savez_compressed(HERE / "train.npz", x=x[:TRAIN], y=y[:TRAIN])
    np.savez_compressed(HERE / "held_out.npz", x=x[TRAIN:], y=y[TRAIN:])
    print(f"train.npz: {TRAIN} examples; held_out.npz: {len(x) - TRAIN} examples")


if __name__ == "__main__":
    main()
