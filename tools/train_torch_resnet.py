"""Train MONAI's ResNet-10 layout in plain PyTorch on a `neurofv synth` lesion
cohort, export it to ONNX, and write what tools/onnx_workflow.sh checks
neurofv against.

    /usr/bin/python3 tools/train_torch_resnet.py --data demo-onnx/data --out demo-onnx

Preprocessing is neurofv's (src/io/preprocess.c) for a model whose grid is the
cohort's own (template.nii.gz): reorientation to RAS, resampling and crop/pad
are then the identity (this script checks that every volume is RAS and on the
template's grid, and refuses otherwise), and zscore-nonzero is
    mean, population SD over the voxels != 0, in float64;
    x = (v - mean) / SD inside, 0 outside, stored as float32.
The network input is (N, 1, D, H, W) with D = z, H = y, W = x: the NIfTI array
(x, y, z) transposed to (z, y, x), as neurofv lays out a volume.

Writes into --out:
  resnet10.onnx              opset 13, dynamic batch axis (BatchNorm folded into the convolutions)
  resnet10.pt                the state_dict of the exported (best validation) epoch
  torch_metrics.json         classes (output order), val accuracy per epoch, test accuracy, timings
  torch_test_predictions.csv path,label,prediction,correct,p_<class>... as `neurofv eval --out`
  parity_x.bin               the preprocessed test inputs, float32 (N, 1, D, H, W)
  parity_torch_logits.bin    torch's logits on them, float32 (N, K)
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import nibabel as nib
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_graph_models as gm  # noqa: E402


def zscore_nonzero(v):
    """neurofv's NFV_NORM_ZSCORE_NONZERO on a float32 volume."""
    inside = v != 0.0
    count = int(inside.sum())
    if count == 0:
        raise ValueError("zscore-nonzero: all voxels are 0")
    d = v[inside].astype(np.float64)
    mean = d.sum() / count
    sd = np.sqrt(((d - mean) ** 2).sum() / count)
    inv = 1.0 / sd if sd > 0 else 0.0
    out = np.zeros(v.shape, np.float32)
    out[inside] = ((d - mean) * inv).astype(np.float32)
    return out


def load_volume(path, template_affine, template_shape):
    img = nib.load(path)
    if img.shape != template_shape or not np.allclose(img.affine, template_affine, atol=1e-4):
        raise SystemExit(f"{path}: grid {img.shape} / affine {img.affine.tolist()} is not the template's "
                         f"{template_shape}: resample it as neurofv does first (this script only handles the "
                         f"cohort's own grid)")
    v = np.asarray(img.dataobj, dtype=np.float32)  # (x, y, z); synth writes float32 without scaling
    if img.dataobj.slope not in (None, 1.0) or img.dataobj.inter not in (None, 0.0):
        v = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
    v = zscore_nonzero(v)
    return np.ascontiguousarray(v.transpose(2, 1, 0))  # (z, y, x) = (D, H, W)


def augment(x, gen, shift):
    """Random left-right flip (x = W axis) and a shift of up to +-shift voxels per axis, zeros shifted in."""
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        v = x[i]
        if torch.rand(1, generator=gen).item() < 0.5:
            v = torch.flip(v, dims=[-1])
        d = torch.randint(-shift, shift + 1, (3,), generator=gen).tolist()
        src = [slice(max(0, -s), n - max(0, s)) for s, n in zip(d, v.shape[1:])]
        dst = [slice(max(0, s), n - max(0, -s)) for s, n in zip(d, v.shape[1:])]
        out[i][(slice(None), *dst)] = v[(slice(None), *src)]
    return out


@torch.no_grad()
def predict(model, x, batch=16):
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def accuracy(logits, y):
    return float((logits.argmax(1) == y).float().mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="cohort folder from neurofv synth (labels.csv, template.nii.gz)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--widen", type=float, default=0.25, help="MONAI widen_factor (default 0.25: 16-32-64-128)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--time-budget", type=float, default=0,
                    help="stop after the epoch that passes this many s (default 0 = run every epoch: the result "
                         "then does not depend on the machine's load)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, cosine schedule over --epochs")
    ap.add_argument("--shift", type=int, default=2, help="augmentation shift in voxels (0 = none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    t_start = time.time()

    tmpl = nib.load(os.path.join(a.data, "template.nii.gz"))
    axc = nib.aff2axcodes(tmpl.affine)
    if axc != ("R", "A", "S"):
        raise SystemExit(f"template orientation {axc}: expected RAS (neurofv reorients; this script does not)")
    with open(os.path.join(a.data, "cohort.json")) as f:
        classes = json.load(f)["classes"]  # output order: synth's shape order
    rows = {"train": [], "val": [], "test": []}
    with open(os.path.join(a.data, "labels.csv")) as f:
        for r in csv.DictReader(f):
            rows[r["split"]].append(r)
    data = {}
    for split, rs in rows.items():
        x = np.stack([load_volume(os.path.join(a.data, r["path"]), tmpl.affine, tmpl.shape) for r in rs])
        y = np.array([classes.index(r["label"]) for r in rs])
        data[split] = (torch.from_numpy(x[:, None]), torch.from_numpy(y))
    shape = tuple(data["train"][0].shape[1:])
    t_load = time.time() - t_start
    print(f"torch: {', '.join(f'{k} {len(v)}' for k, v in rows.items())} subjects, input {shape} (C, D, H, W) "
          f"from NIfTI {tmpl.shape} (x, y, z); classes {','.join(classes)}; loaded in {t_load:.1f} s", flush=True)

    model = gm.resnet10(num_classes=len(classes), widen_factor=a.widen, conv1_t_stride=2)
    print(f"torch: MONAI resnet10 widen_factor {a.widen}, conv1_t_stride 2: {gm.param_count(model):,} parameters",
          flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)  # per epoch, to 0 at --epochs
    gen = torch.Generator().manual_seed(a.seed)
    xtr, ytr = data["train"]
    xva, yva = data["val"]
    history, best, best_state = [], -1.0, None
    t0 = time.time()
    for epoch in range(1, a.epochs + 1):
        te = time.time()
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        loss_sum = 0.0
        for i in range(0, len(perm), a.batch):
            idx = perm[i:i + a.batch]
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            xb = augment(xtr[idx], gen, a.shift) if a.shift > 0 else xtr[idx]
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(idx)
        sched.step()
        vl = predict(model, xva)
        vacc = accuracy(vl, yva)
        history.append({"epoch": epoch, "train_loss": loss_sum / len(ytr), "val_accuracy": vacc,
                        "seconds": time.time() - te})
        mark = ""
        if vacc >= best:  # ties: the later epoch
            best, best_state = vacc, {k: v.clone() for k, v in model.state_dict().items()}
            mark = " *"
        print(f"torch epoch {epoch:2d}: train loss {loss_sum / len(ytr):.4f}, val accuracy {vacc:.4f} "
              f"({time.time() - te:.1f} s){mark}", flush=True)
        if a.time_budget > 0 and time.time() - t0 > a.time_budget:
            print(f"torch: time budget {a.time_budget:.0f} s reached after epoch {epoch}", flush=True)
            break
    t_train = time.time() - t0
    model.load_state_dict(best_state)
    best_epoch = max(h["epoch"] for h in history if h["val_accuracy"] == best)
    model.eval()

    xte, yte = data["test"]
    tl = predict(model, xte)
    tacc = accuracy(tl, yte)
    print(f"torch: best val accuracy {best:.4f} (epoch {best_epoch}); test accuracy {tacc:.4f} "
          f"({int((tl.argmax(1) == yte).sum())}/{len(yte)})", flush=True)
    prob = torch.softmax(tl.double(), 1)
    with open(os.path.join(a.out, "torch_test_predictions.csv"), "w") as f:
        f.write("path,label,prediction,correct," + ",".join("p_" + c for c in classes) + "\n")
        for r, p, pr in zip(rows["test"], tl.argmax(1).tolist(), prob.tolist()):
            f.write(f"{r['path']},{r['label']},{classes[p]},{int(classes[p] == r['label'])},"
                    + ",".join(f"{v:.6f}" for v in pr) + "\n")
    xte.numpy().astype(np.float32).tofile(os.path.join(a.out, "parity_x.bin"))
    tl.numpy().astype(np.float32).tofile(os.path.join(a.out, "parity_torch_logits.bin"))
    torch.save(best_state, os.path.join(a.out, "resnet10.pt"))

    te = time.time()
    onnx_path = os.path.join(a.out, "resnet10.onnx")
    ops = gm.export_onnx(model, onnx_path, shape, opset=13)
    t_export = time.time() - te
    print(f"torch: exported {onnx_path} (opset 13, dynamic batch; {gm.ops_text(ops)}) in {t_export:.1f} s", flush=True)
    with open(os.path.join(a.out, "torch_metrics.json"), "w") as f:
        json.dump({"classes": classes, "input_shape": list(shape), "widen_factor": a.widen,
                   "parameters": gm.param_count(model), "lr": a.lr, "schedule": "cosine", "batch": a.batch, "seed": a.seed,
                   "epochs_run": len(history), "best_epoch": best_epoch, "val_accuracy": best,
                   "test_accuracy": tacc, "test_correct": int((tl.argmax(1) == yte).sum()), "test_n": len(yte),
                   "history": history, "seconds": {"load": t_load, "train": t_train, "export": t_export,
                                                    "total": time.time() - t_start}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
