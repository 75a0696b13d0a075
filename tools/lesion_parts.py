#!/usr/bin/python3
"""Which part of a real lesion a class logit uses: each of N test subjects of
CLASS in a `neurofv synth --task lesion` cohort, scored by the model with its
whole lesion, with none of it, with only its outer part (the voxels farther
than FRACTION of the lesion's radius from its centre: a cross's arm tips) and
with only its inner part (the core).  A part is removed by setting its voxels
to the median of the two-voxel shell around the lesion (the tissue it sits
in).  Every class logit of each variant comes from `neurofv visualize --init
subject=FILE --steps 1 --lr 1e-9` (the objective of the unchanged subject).

  tools/lesion_parts.py NEUROFV MODEL COHORT CLASS [N=4] [FRACTION=0.6] [OUT=lesion_parts]

Prints one row per subject and variant, then the median per variant."""
import csv, os, re, statistics, subprocess, sys

import numpy as np
import nibabel as nib
from scipy.ndimage import binary_dilation

neurofv, model, cohort, cls = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 4
fraction = float(sys.argv[6]) if len(sys.argv) > 6 else 0.6
out = sys.argv[7] if len(sys.argv) > 7 else "lesion_parts"
os.makedirs(out, exist_ok=True)
rows = list(csv.DictReader(open(f"{cohort}/labels.csv")))
classes = sorted(set(r["label"] for r in rows))
subjects = [r for r in rows if r["label"] == cls and r["split"] == "test"][:n]
if not subjects:
    sys.exit(f"lesion_parts: no test subject of class {cls} in {cohort}/labels.csv")
targets = sum((["--target", f"logit:{c}"] for c in classes), [])
logits = {}
print("subject variant lesion_voxels_kept " + " ".join(f"logit:{c}" for c in classes))
for r in subjects:
    image = nib.load(f"{cohort}/{r['path']}")
    volume = np.asarray(image.dataobj, dtype=np.float32)
    lesion = np.asarray(nib.load(f"{cohort}/lesion_masks/{os.path.basename(r['path'])}").dataobj) > 0.5
    voxels = np.array(np.nonzero(lesion))
    dist = np.sqrt(((voxels - voxels.mean(axis=1)[:, None]) ** 2).sum(axis=0))
    tissue = np.median(volume[binary_dilation(lesion, iterations=2) & ~lesion])
    for variant, keep in (("whole", np.ones(dist.shape, bool)), ("none", np.zeros(dist.shape, bool)),
                          ("outer", dist > fraction * dist.max()), ("inner", dist <= fraction * dist.max())):
        changed = volume.copy()
        changed[tuple(voxels[:, ~keep])] = tissue
        path = f"{out}/{os.path.basename(r['path'])[:-7]}_{variant}.nii.gz"
        nib.save(nib.Nifti1Image(changed, image.affine, image.header), path)
        run = subprocess.run([neurofv, "visualize", "--model", model, *targets, "--init", f"subject={path}",
                              "--steps", "1", "--lr", "1e-9", "--out", f"{path[:-7]}_vis"],
                             capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"lesion_parts: neurofv visualize failed on {path}: {run.stderr.strip()}")
        got = dict(re.findall(r"^logit:(\S+): objective (\S+)", run.stdout, re.M))
        values = [float(got[c]) for c in classes]
        logits.setdefault(variant, []).append(values)
        print(f"{r['path']} {variant} {int(keep.sum())} " + " ".join(f"{x:.3f}" for x in values))
print("median over subjects:")
for variant, values in logits.items():
    print(f"  {variant}: " + ", ".join(f"logit:{c} {statistics.median(v[i] for v in values):.3f}"
                                       for i, c in enumerate(classes)))
