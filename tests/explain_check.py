#!/usr/bin/python3
"""nibabel check for tests/test_explain_cli.c: an attribution map written in
a subject's own space overlays on that subject.

  explain_check.py SUBJECT.nii.gz MAP.nii.gz X Y Z TOL_MM
      The map must have the subject's shape and affine (as nibabel reads
      them), and the world point (mm) of its largest |value| must be within
      TOL_MM of (X, Y, Z), the planted blob.  Prints the numbers; exit 1 on
      failure."""
import sys

import numpy as np
import nibabel as nib

subj, amap = nib.load(sys.argv[1]), nib.load(sys.argv[2])
want = np.array([float(v) for v in sys.argv[3:6]])
tol = float(sys.argv[6])
ok = True
if subj.shape[:3] != amap.shape[:3]:
    print(f"shape {amap.shape} != subject {subj.shape}")
    ok = False
if not np.allclose(subj.affine, amap.affine, atol=1e-4):
    print(f"affine\n{amap.affine}\n!= subject\n{subj.affine}")
    ok = False
data = np.abs(np.asarray(amap.dataobj, dtype=np.float64))
ijk = np.unravel_index(np.argmax(data), data.shape)
world = amap.affine @ np.array([*ijk, 1.0])
dist = float(np.linalg.norm(world[:3] - want))
print(f"peak voxel {tuple(int(v) for v in ijk)} at world {np.round(world[:3], 2)} mm, planted {want}, distance {dist:.2f} mm (tol {tol})")
if dist > tol:
    ok = False
sys.exit(0 if ok else 1)
