#!/usr/bin/env python3
"""Peer for `neurofv bench-kernels`: PyTorch conv3d on the ref4 layer shapes.

Times forward, backward-input and backward-weights (+ bias) of a 3x3x3,
stride 1, pad 1 Conv3d at 2 mm (1->8 at 91x109x91, 8->16 at 45x54x45,
16->32 at 22x27x22, 32->64 at 11x13x11) with the same method as
bench-kernels: warm-up runs, then the median (and min) of --reps runs.
GFLOP/s counts 2 x multiply-adds.  Use Debian's python3 (with torch):
    /usr/bin/python3 tools/bench_conv_torch.py --threads 2 --batch 1,4
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

REF4 = [(1, 8, 91, 109, 91), (8, 16, 45, 54, 45), (16, 32, 22, 27, 22), (32, 64, 11, 13, 11)]


def time_fn(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", default="1,4")
    ap.add_argument("--layers", default="1,2,3,4")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mkldnn", action="store_true", help="force oneDNN (torch.backends.mkldnn) on")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.backends.mkldnn.enabled = bool(a.mkldnn) or torch.backends.mkldnn.enabled
    print(f"torch {torch.__version__}, {a.threads} threads, mkldnn={torch.backends.mkldnn.enabled}")
    print(f"{'batch':<5} {'layer':<21} {'op':<19} {'median ms':>10} {'GFLOP/s':>9} {'min ms':>8}")
    for b in [int(v) for v in a.batch.split(",")]:
        for li in [int(v) for v in a.layers.split(",")]:
            ci, co, d, h, w = REF4[li - 1]
            x = torch.randn(b, ci, d, h, w)
            wt = torch.randn(co, ci, 3, 3, 3) * 0.1
            bias = torch.randn(co) * 0.1
            dy = torch.randn(b, co, d, h, w)
            flop = 2.0 * b * co * ci * 27 * d * h * w
            ops = {
                "conv3d fwd": lambda: F.conv3d(x, wt, bias, 1, 1),
                "conv3d bwd-input": lambda: torch.nn.grad.conv3d_input(x.shape, wt, dy, 1, 1),
                "conv3d bwd-weights": lambda: (torch.nn.grad.conv3d_weight(x, wt.shape, dy, 1, 1),
                                               dy.sum((0, 2, 3, 4))),
            }
            label = f"conv{li} {ci}->{co} {d}x{h}x{w}"
            with torch.no_grad():
                for name, fn in ops.items():
                    med, best = time_fn(fn, a.warmup, a.reps)
                    print(f"{b:<5} {label:<21} {name:<19} {med * 1e3:10.3f} {flop / med * 1e-9:9.1f} {best * 1e3:8.3f}",
                          flush=True)


if __name__ == "__main__":
    main()
