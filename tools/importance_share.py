#!/usr/bin/env python3
"""Where does a unit look?  Share of an importance map's mass (from
`neurofv visualize --importance on`) inside the union of a synthetic cohort's
lesion masks and inside its brain mask.

    /usr/bin/python3 tools/importance_share.py SYNTH_DIR IMPORTANCE.nii.gz [...]

SYNTH_DIR is a `neurofv synth --task lesion` output (lesion_masks/, mask.nii.gz)
on the same grid as the maps (synth --voxel equal to the model's).
"""
import glob
import sys

import nibabel as nib
import numpy as np


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    synth, maps = argv[1], argv[2:]
    files = sorted(glob.glob(f"{synth}/lesion_masks/*.nii.gz"))
    if not files:
        sys.stderr.write(f"importance_share: no lesion masks in {synth}/lesion_masks\n")
        return 1
    union = None
    for f in files:
        m = nib.load(f).get_fdata() > 0.5
        union = m if union is None else union | m
    brain = nib.load(f"{synth}/mask.nii.gz").get_fdata() > 0.5
    print(f"{len(files)} lesion masks; their union covers {union[brain].sum() / brain.sum():.3f} of the brain")
    for path in maps:
        imp = nib.load(path).get_fdata()
        if imp.shape != union.shape:
            sys.stderr.write(f"importance_share: {path} is {imp.shape}, the cohort grid {union.shape}\n")
            return 1
        total = imp.sum()
        if not total > 0:
            sys.stderr.write(f"importance_share: {path} is all zero\n")
            return 1
        print(f"{path}: share in lesion union {imp[union].sum() / total:.3f}, in brain {imp[brain].sum() / total:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
