"""Runs ONNX models in ONNX Runtime for the tests (tests/onnx.rs).

Usage: run_onnx.py JOBS.json. JOBS.json is a list of jobs, each
{"model": PATH, "dtype": "f32" | "f64", "inputs": {NAME: nested lists}}.
Every model is first checked with onnx.checker (full_check: types and shapes
inferred by the onnx package), then run on ONNX Runtime's CPU provider.
Prints one JSON list: for each job, {NAME: nested lists} of its outputs in
graph order, or {"error": MESSAGE}.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def run(job):
    model = onnx.load(job["model"])
    onnx.checker.check_model(model, full_check=True)
    dtype = {"f32": np.float32, "f64": np.float64}[job["dtype"]]
    session = ort.InferenceSession(job["model"], providers=["CPUExecutionProvider"])
    feeds = {name: np.asarray(value, dtype=dtype) for name, value in job["inputs"].items()}
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    return {name: np.asarray(r).astype(np.float64).tolist() for name, r in zip(names, results)}


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    answers = []
    for job in jobs:
        try:
            answers.append(run(job))
        except Exception as e:  # reported per job, so one bad model names itself
            answers.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
