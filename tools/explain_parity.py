#!/usr/bin/python3
"""Attribution parity with PyTorch (Debian python3-torch), run by `make test-torch`.

A ref4-like model with random weights and BatchNorm statistics is written
as a neurofv file (tools/neurofv_torch.py); a subject is written with
nibabel on the model's own grid (RAS, the model affine, normalization
"none", so preprocessing is the identity).  `neurofv explain` then gives
Grad-CAM, saliency and integrated gradients for one logit, and the same
formulas are computed here in torch (float64):

  Grad-CAM   MONAI's GradCAM before its min-max normalization: forward and
             backward hooks on the layer, weights = gradient mean over
             (D, H, W), ReLU(sum_c w_c a_c), F.interpolate(trilinear,
             align_corners=False) to the input size
  saliency   |d logit / d x|
  IG         (x - 0) * mean over k < K of the gradient at (k + 1/2)/K x

Tolerance: |neurofv - torch| <= 1e-4 * max|torch| + 1e-3 |torch|, the worst
difference printed.  Exit 1 on any failure."""
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import neurofv_torch as nt  # noqa: E402

BIN = os.environ.get("NEUROFV_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "neurofv"))
SHAPE = (1, 24, 28, 20)  # (C, D, H, W)
SPEC = "conv(8,k3,p1) bn relu maxpool(2) conv(16,k3,p1) bn relu maxpool(2) conv(16,k3,p1) bn relu flatten linear(3)"
CAM_LAYER = 10  # the third relu: (16, 6, 7, 5)
STEPS = 16
TARGET = 1


def check(what, got, want):
    scale = np.abs(want).max()
    tol = 1e-4 * scale + 1e-3 * np.abs(want)
    diff = np.abs(got - want)
    worst = np.unravel_index(np.argmax(diff - tol), diff.shape)
    ok = bool(np.all(diff <= tol))
    print(f"{'ok  ' if ok else 'FAIL'} explain parity {what}: max |diff| {diff.max():.3g} (max |torch| {scale:.3g}), "
          f"worst at {tuple(int(v) for v in worst)}: neurofv {got[worst]:.6g} torch {want[worst]:.6g}")
    return ok


def torch_maps(model, x):
    m = model.double().eval()
    acts = {}
    layer = m[CAM_LAYER]
    layer.register_forward_hook(lambda mod, inp, out: acts.__setitem__("a", out))
    layer.register_full_backward_hook(lambda mod, gin, gout: acts.__setitem__("g", gout[0]))
    xt = torch.tensor(x[None], dtype=torch.float64, requires_grad=True)
    m(xt)[0, TARGET].backward()
    a, g = acts["a"].detach(), acts["g"].detach()
    w = g.mean(dim=(2, 3, 4), keepdim=True)
    cam = F.relu((w * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[1:], mode="trilinear", align_corners=False)[0, 0].numpy()
    sal = np.abs(xt.grad[0, 0].numpy())
    alphas = (np.arange(STEPS) + 0.5) / STEPS
    xs = torch.tensor(alphas[:, None, None, None, None] * x[None], dtype=torch.float64, requires_grad=True)
    m(xs)[:, TARGET].sum().backward()
    ig = x[0] * xs.grad[:, 0].numpy().mean(axis=0)
    return cam, sal, ig


def main():
    torch.manual_seed(3)
    model = nt.build_sequential(SPEC, SHAPE)
    with torch.no_grad():
        for mod in model:
            if isinstance(mod, torch.nn.BatchNorm3d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.3)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, SHAPE)
    c, d, h, w = SHAPE
    vox = (2.0, 2.0, 2.0)
    affine = np.eye(4)
    for a, n in enumerate((w, h, d)):
        affine[a, a] = vox[a]
        affine[a, 3] = -0.5 * (n - 1) * vox[a]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        mpath, spath, out = (os.path.join(tmp, f) for f in ("m.safetensors", "subject.nii.gz", "out"))
        nt.export_model(model, mpath, SHAPE, classes=["a", "b", "c"], affine=affine, norm="none")
        # nibabel's array is (x, y, z) = (W, H, D): the transpose of (D, H, W).
        nib.save(nib.Nifti1Image(x[0].transpose(2, 1, 0).astype(np.float32), affine), spath)
        r = subprocess.run([BIN, "explain", "--model", mpath, "--input", spath, "--target", "logit:b", "--method",
                            "gradcam,saliency,integrated-gradients", "--steps", str(STEPS), "--cam-layer",
                            str(CAM_LAYER), "--out", out], capture_output=True, text=True)
        if r.returncode:
            print(f"FAIL explain parity: neurofv explain failed: {r.stderr.strip()}")
            return 1
        cam, sal, ig = torch_maps(model, x)
        for name, want in (("gradcam", cam), ("saliency", sal), ("integrated-gradients", ig)):
            got = np.asarray(nib.load(os.path.join(out, "subject", name + ".nii.gz")).dataobj, dtype=np.float64)
            ok &= check(name, got.transpose(2, 1, 0), want)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
