#!/usr/bin/env python3
"""Share of each class logit's importance (visualize --importance on) within
16 mm (2 sigma of synth's hippocampal contraction) of either hippocampal
centre, for a `synth --task morph` model.  Usage: tools/morph_importance.py
[ROOT] (ROOT/vis/<config>/seed<S>/logit_*_importance.nii.gz)."""
import nibabel as nib, numpy as np, glob, os, sys
ROOT = sys.argv[1] if len(sys.argv) > 1 else 'morph'
from collections import defaultdict
centres = np.array([[-28,-24,-12],[28,-24,-12]], float)
R = 16.0  # 2 x the atrophy's Gaussian sigma (8 mm, src/io/synth_anatomy.c)
mask_img = nib.load(ROOT + '/data/mask.nii.gz')
res = defaultdict(list)
region_share = None
for f in sorted(glob.glob(ROOT + '/vis/*/seed*/logit_*_importance.nii.gz')):
    img = nib.load(f); d = np.abs(img.get_fdata())
    ijk = np.indices(d.shape).reshape(3,-1).T
    xyz = ijk @ img.affine[:3,:3].T + img.affine[:3,3]
    dist = np.min(np.linalg.norm(xyz[:,None,:]-centres[None],axis=2),axis=1).reshape(d.shape)
    region = dist <= R
    if region_share is None: region_share = region.mean()
    cfg = f.split('/')[-3]; cls = os.path.basename(f).split('_')[1]
    res[(cfg, cls)].append(d[region].sum()/d.sum())
print(f'atrophy region (<= {R} mm of either hippocampal centre): {region_share:.4f} of the grid')
for k,v in sorted(res.items()):
    print(f'{k[0]:16s} logit:{k[1]:8s} importance share in region: ' + ', '.join(f'{x:.3f}' for x in v) + f'  (mean {np.mean(v):.3f})')
