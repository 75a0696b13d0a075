#!/usr/bin/python3
"""SciPy check for tests/test_compare.c: compare's real-lesion reference
(nfv_truth_reference: a synth cohort's own lesion masks scored by the concept
recovery scorer) against an independent NumPy/SciPy implementation.

  truth_check.py COHORT_DIR RESULTS_MD

Here: the shapes are painted from their definitions (include/neurofv/synth.h)
at the cohort's smallest, middle and largest lesion size (cohort.json), 4^3
sub-samples a voxel; the NCC search is an FFT correlation over every position
whose shape and its 26-neighbour halo lie inside mask.nii.gz; per class the
first 10 subjects with a lesion mask, the test split first.  Every row of the
"What a real lesion scores" table must agree: the counts exactly, the NCC
medians within 2e-3.  Prints both; exit 1 on a mismatch."""
import csv, json, re, sys

import numpy as np
import nibabel as nib
from scipy.ndimage import binary_dilation
from scipy.signal import fftconvolve

cohort, results = sys.argv[1], sys.argv[2]
meta = json.load(open(f"{cohort}/cohort.json"))
vox = float(meta["voxel_mm"])
lo, hi = meta["lesion_size_mm"]
scale = meta.get("size_scale", {})
load = lambda p: np.asarray(nib.load(p).dataobj, dtype=np.float64)
mask = load(f"{cohort}/mask.nii.gz") > 0.5
rows = list(csv.DictReader(open(f"{cohort}/labels.csv")))
import os
classes = sorted(f[:-7] for f in os.listdir(f"{cohort}/shapes") if f.endswith(".nii.gz"))


def contains(shape, s, dx, dy, dz):
    h, ax, ay, az = 0.5 * s, abs(dx), abs(dy), abs(dz)
    if shape == "sphere": return dx * dx + dy * dy + dz * dz <= h * h
    if shape == "cube": return (ax <= h) & (ay <= h) & (az <= h)
    if shape == "cross":
        t = 0.18 * s
        return (ax <= h) & (ay <= h) & (az <= h) & ((ax <= t) * 1 + (ay <= t) + (az <= t) >= 2)
    if shape == "cylinder": return (dx * dx + dy * dy <= h * h) & (az <= h)
    if shape == "pyramid": return (az <= h) & (ax <= h * (h - dz) / s) & (ay <= h * (h - dz) / s)
    if shape == "torus":
        minor = s / 6.0
        q = np.sqrt(dx * dx + dy * dy) - (h - minor)
        return q * q + dz * dz <= minor * minor
    raise SystemExit(f"unknown shape {shape}")


def template(shape, s):
    n = 2 * int(np.ceil((0.5 * s + 3.0) / vox)) + 1
    sub = (np.arange(n)[:, None] - 0.5 * (n - 1) - 0.375 + 0.25 * np.arange(4)[None, :]).ravel() * vox
    x, y, z = np.meshgrid(sub, sub, sub, indexing="ij")
    return contains(shape, s, x, y, z).astype(np.float64).reshape(n, 4, n, 4, n, 4).mean(axis=(1, 3, 5))


def ncc(v, t):
    tc = t - t.mean()
    num = fftconvolve(v, tc[::-1, ::-1, ::-1], mode="valid")
    box = np.ones(t.shape)
    s1, s2 = fftconvolve(v, box, mode="valid"), fftconvolve(v * v, box, mode="valid")
    var = s2 - s1 * s1 / t.size
    score = np.where(var > 1e-9, num / (np.sqrt((tc ** 2).sum()) * np.sqrt(np.maximum(var, 1e-30))), 0.0)
    need = binary_dilation(t > 0, np.ones((3, 3, 3))).astype(np.float64)
    inside = fftconvolve(mask.astype(np.float64), need[::-1, ::-1, ::-1], mode="valid") > need.sum() - 0.5
    return score[inside].max() if inside.any() else -2.0


sizes = [lo, 0.5 * (lo + hi), hi]
templates = {c: [template(c, s * scale.get(c, 1.0)) for s in sizes] for c in classes}
mine = {}
for c in classes:
    subjects = [r for r in rows if r["label"] == c and r["split"] == "test"] + \
               [r for r in rows if r["label"] == c and r["split"] != "test"]
    own, margin = [], []
    for r in subjects:
        try:
            m = load(f"{cohort}/lesion_masks/{r['path'].split('/')[-1]}")
        except FileNotFoundError:
            continue
        s = {k: max(ncc(m, t) for t in templates[k]) for k in classes}
        own.append(s[c])
        margin.append(s[c] - max(s[k] for k in classes if k != c))
        if len(own) == 10: break
    margin = np.array(margin)
    mine[c] = (len(own), int((margin > 0).sum()), int((margin > 0.05).sum()), float(np.median(own)),
               float(np.median(margin)), float(margin.min()))

theirs = {}
table = re.search(r"## What a real lesion scores.*?\|---[^\n]*\n((?:\|[^\n]*\n)+)", open(results).read(), re.S)
for line in (table.group(1).splitlines() if table else []):
    f = [x.strip() for x in line.strip("|").split("|")]
    theirs[f[0]] = (int(f[1]), int(f[2].split("/")[0]), int(f[3].split("/")[0]), float(f[4]), float(f[5]), float(f[6]))
ok = set(theirs) == set(mine)
for c in classes:
    a, b = mine[c], theirs.get(c)
    same = b is not None and a[:3] == b[:3] and all(abs(x - y) <= 2e-3 for x, y in zip(a[3:], b[3:]))
    ok &= same
    print(f"{c}: scipy {a[0]} lesions, {a[1]} recovered, {a[2]} > 0.05, own {a[3]:.3f}, margin {a[4]:.3f} "
          f"(min {a[5]:.3f}); neurofv {b}{'' if same else '  MISMATCH'}")
sys.exit(0 if ok else 1)
