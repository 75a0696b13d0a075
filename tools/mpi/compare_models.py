#!/usr/bin/env python3
"""Checks that two neurofv model files (or checkpoints) hold the same
tensors: for every tensor, max |a - b| <= atol + rtol * max |b| (relative
to the tensor's own magnitude, so a parameter whose values sit at zero,
such as a BatchNorm running mean of a zero-mean input at 1e-11, is judged by
atol instead of by its own rounding noise).  Optimizer state (optim.*) is
skipped unless --optim.

Usage: compare_models.py A B [--rtol 1e-5] [--atol 1e-8] [--optim]
Prints the worst tensor and exits 1 when any tensor differs by more."""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from neurofv_torch import load_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--atol", type=float, default=1e-8)
    ap.add_argument("--optim", action="store_true", help="also compare the optimizer state")
    args = ap.parse_args()
    ta, _ = load_safetensors(args.a)
    tb, _ = load_safetensors(args.b)
    if sorted(ta) != sorted(tb):
        print(f"compare_models: tensors differ: {sorted(set(ta) ^ set(tb))}")
        return 1
    worst, worst_name, bad = 0.0, None, 0
    names = [n for n in sorted(ta) if args.optim or not n.startswith("optim.")]
    for name in names:
        a = ta[name].astype(np.float64)
        b = tb[name].astype(np.float64)
        if a.shape != b.shape:
            print(f"compare_models: {name}: shapes {a.shape} vs {b.shape}")
            return 1
        if a.size == 0:
            continue
        diff = float(np.abs(a - b).max())
        allowed = args.atol + args.rtol * float(np.abs(b).max())
        if diff / allowed > worst:
            worst, worst_name = diff / allowed, f"{name}: max |diff| {diff:.3g}, allowed {allowed:.3g}"
        bad += diff > allowed
    print(f"compare_models: {len(names)} tensors, worst {worst_name} (atol {args.atol:g} + rtol {args.rtol:g} "
          f"x max |b|): {'FAIL' if bad else 'ok'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
