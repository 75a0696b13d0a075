#!/usr/bin/python3
"""nibabel cross-check helper for tests/test_nifti.c and tests/test_preprocess.c.

  nifti_check.py dump IN.nii[.gz] OUT.bin
      Reads IN with nibabel (get_fdata: scl_slope/inter applied, first volume
      of a 4-D file) and writes OUT.bin: 3 int32 dims (nx, ny, nz), 16 float64
      (img.affine, row-major), then nx*ny*nz float64 voxels in NIfTI order
      (i fastest).  The C test compares this with nfv_volume_read.

  nifti_check.py canonical IN.nii[.gz] OUT.bin
      As dump, after nibabel's as_closest_canonical (reorientation to RAS),
      to cross-check nfv_volume_reorient_ras.

  nifti_check.py make KIND OUT.nii[.gz]
      Writes a test file with nibabel (an independent writer):
        lps    int16 12x10x8, affine diag(-2,-2,2.5)+offset (LPS-like), slope 0.5 inter -3
        oblique float32 9x7x11, permuted+flipped axes (k->x, i->y, j->-z), sform only
        4d     float32 7x9x11x3, volume t has value 100*t + linear index
        nifti2 float64 7x9x11 NIfTI-2 with qform only
        nan    float32 7x9x11 with 3 NaN and 2 Inf voxels
        2d     float32 16x16 (must be rejected)
      Voxel values are deterministic functions of the index so C can predict them.
"""
import struct
import sys

import numpy as np
import nibabel as nib


def ramp(shape):
    """Value = i + 10 j + 100 k (+ 1000 t): distinct, exactly representable."""
    idx = np.indices(shape).astype(np.float64)
    w = [1.0, 10.0, 100.0, 1000.0]
    return sum(w[d] * idx[d] for d in range(len(shape)))


def make(kind, out):
    if kind == "lps":
        aff = np.array([[-2.0, 0, 0, 30], [0, -2.0, 0, 40], [0, 0, 2.5, -20], [0, 0, 0, 1]])
        raw = (ramp((12, 10, 8)) % 700).astype(np.int16)
        img = nib.Nifti1Image(raw, aff)
        img.set_qform(aff, code=1)
        img.set_sform(aff, code=4)
        img.to_filename(out)  # int16, no scaling (raw ints fit)
        # nibabel recomputes scl_slope/inter on save, so patch the NIfTI-1
        # header fields (float32 at byte 112 and 116) of the .nii afterwards.
        assert out.endswith(".nii")
        with open(out, "r+b") as f:
            f.seek(112)
            f.write(struct.pack("<2f", 0.5, -3.0))
    elif kind == "oblique":
        # voxel axis i -> world +y (1.5 mm), j -> world -z (2 mm), k -> world +x (1 mm)
        aff = np.array([[0, 0, 1.0, -5], [1.5, 0, 0, -7], [0, -2.0, 0, 11], [0, 0, 0, 1]])
        img = nib.Nifti1Image(ramp((9, 7, 11)).astype(np.float32), aff)
        img.set_sform(aff, code=2)
        img.set_qform(None, code=0)
        img.to_filename(out)
    elif kind == "4d":
        img = nib.Nifti1Image(ramp((7, 9, 11, 3)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
        img.to_filename(out)
    elif kind == "nifti2":
        aff = np.array([[1.25, 0, 0, -3], [0, 1.25, 0, 4], [0, 0, 1.25, 5.5], [0, 0, 0, 1]])
        img = nib.Nifti2Image(ramp((7, 9, 11)).astype(np.float64), aff)
        img.set_qform(aff, code=1)
        img.set_sform(None, code=0)
        img.to_filename(out)
    elif kind == "nan":
        a = ramp((7, 9, 11)).astype(np.float32)
        a[0, 0, 0] = np.nan
        a[3, 4, 5] = np.nan
        a[6, 8, 10] = np.nan
        a[1, 2, 3] = np.inf
        a[2, 3, 4] = -np.inf
        nib.Nifti1Image(a, np.eye(4)).to_filename(out)
    elif kind == "2d":
        nib.Nifti1Image(np.ones((16, 16), np.float32), np.eye(4)).to_filename(out)
    else:
        raise SystemExit("unknown kind " + kind)


def dump(path, out, canonical=False):
    img = nib.load(path)
    if canonical:
        img = nib.as_closest_canonical(img)
    data = np.asarray(img.dataobj, dtype=np.float64)
    if data.ndim > 3:
        data = data.reshape(data.shape[:3] + (-1,))[..., 0]
    aff = np.asarray(img.affine, dtype=np.float64)
    with open(out, "wb") as f:
        f.write(struct.pack("<3i", *data.shape))
        f.write(aff.astype("<f8").tobytes(order="C"))
        f.write(data.astype("<f8").tobytes(order="F"))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "canonical":
        dump(sys.argv[2], sys.argv[3], canonical=True)
    elif len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
