"""PyTorch parity of neurofv models, both directions (run by `make test-torch`).

For each architecture:
  torch -> neurofv: a torch nn.Sequential with random weights and BN running
      statistics is exported with tools/neurofv_torch.py; neurofv loads it and
      computes eval-mode logits and the input gradient of logit 0 for a batch.
  neurofv -> torch: neurofv writes a freshly initialized model
      (`neurofv inspect --arch ... --save`); torch loads it (strict state_dict)
      and computes the same.
Pass: logits within 1e-4 relative (to the largest |logit|) and input gradients
within 1e-3 relative (to the largest |gradient|) of torch in float64.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import neurofv_torch as nt  # noqa: E402

BIN = os.environ.get("NEUROFV_BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "neurofv"))

CASES = [
    # ref4 on a smaller grid to stay quick; 3 classes
    ("ref4", (1, 32, 40, 32), 3),
    # stride-2 convs, avg pool, ELU, LeakyReLU, no bias, global average pool, binary head
    ("conv(4,k3,s2,p1,nobias) elu(1) avgpool(2) conv(8,k3,p1,nobias) bn lrelu(0.1) conv(6,k3x3x1,s2,p1x1x0) elu(0.7) "
     "avgpool(2,1) gap flatten linear(5) elu(1) linear(1)", (1, 21, 26, 19), 1),
]


def torch_reference(model, x, grad_class):
    m = model.double().eval()
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = m(xt)
    out[:, grad_class].sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


def neurofv_run(model_path, x, grad_class, tmp):
    xin = os.path.join(tmp, "x.bin")
    dump = os.path.join(tmp, "dump.bin")
    x.astype("<f4").tofile(xin)
    r = subprocess.run([BIN, "inspect", model_path, "--input", xin, "--grad-class", str(grad_class), "--dump", dump],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"neurofv inspect failed: {r.stderr.strip()}")
    raw = np.fromfile(dump, dtype="<f4")
    n = x.shape[0]
    k = (raw.size - x.size) // n
    return raw[:n * k].reshape(n, k), raw[n * k:].reshape(x.shape)


def training_parity(spec, shape, classes, tmp, rng):
    """Training-mode outputs and every parameter gradient of the loss (BN batch
    statistics, no dropout: p = 0) against torch in float64."""
    spec = nt.PRESETS.get(spec, spec).replace("dropout(0.5)", "dropout(0)")
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    labels = [0, classes - 1] if classes > 1 else [0, 1]
    path = os.path.join(tmp, "train.safetensors")
    c, d, h, w = shape
    r = subprocess.run([BIN, "inspect", "--arch", spec, "--shape", f"{w},{h},{d}", "--classes", str(classes),
                        "--seed", "4", "--save", path], capture_output=True, text=True)
    if r.returncode:
        print(f"FAIL neurofv could not save: {r.stderr.strip()}")
        return False
    model, _ = nt.import_model(path)
    xin, dump = os.path.join(tmp, "xt.bin"), os.path.join(tmp, "gt.bin")
    x.astype("<f4").tofile(xin)
    r = subprocess.run([BIN, "inspect", path, "--input", xin, "--labels", ",".join(map(str, labels)), "--dump", dump],
                       capture_output=True, text=True)
    if r.returncode:
        print(f"FAIL neurofv training gradients: {r.stderr.strip()}")
        return False
    raw = np.fromfile(dump, dtype="<f4")
    m = model.double().train()
    out = m(torch.tensor(x, dtype=torch.float64))
    if classes > 1:
        loss = torch.nn.functional.cross_entropy(out, torch.tensor(labels))
    else:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], torch.tensor(labels, dtype=torch.float64))
    loss.backward()
    k = out.shape[1]
    ok = compare(f"training {shape}: outputs", raw[:2 * k].reshape(2, k), out.detach().numpy(), 1e-4)
    at = 2 * k
    mods = list(m)
    weight_scale = {}
    for name, prm in m.named_parameters():
        g = prm.grad.numpy()
        got = raw[at:at + g.size].reshape(g.shape)
        at += g.size
        idx, field = name.split(".")
        if field == "weight":
            weight_scale[idx] = np.abs(g).max()
        nxt = mods[int(idx) + 1] if int(idx) + 1 < len(mods) else None
        if field == "bias" and isinstance(mods[int(idx)], torch.nn.Conv3d) and isinstance(nxt, torch.nn.BatchNorm3d):
            # A conv bias followed by training-mode BN has a true gradient of 0 (BN
            # removes the channel mean): check it is round-off next to the weight's.
            rel = np.abs(got).max() / weight_scale[idx]
            good = rel < 1e-3
            print(f"{'ok  ' if good else 'FAIL'} training {shape}: grad {name} (exactly 0 in theory): "
                  f"max |got| / max |weight grad| = {rel:.2e} (limit 0.001)")
            ok &= good
            continue
        # Sums over N*D*H*W (1.8 M terms at 91x109x91) in float32: 1e-2.
        ok &= compare(f"training {shape}: grad {name} {tuple(g.shape)}", got, g, 1e-2)
    return ok


def compare(what, got, want, rtol):
    scale = max(np.abs(want).max(), 1e-12)
    err = np.abs(got - want).max() / scale
    ok = err <= rtol
    print(f"{'ok  ' if ok else 'FAIL'} {what}: max |diff| / max |ref| = {err:.2e} (limit {rtol:g})")
    return ok


def main():
    ok = True
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        for spec, shape, classes in CASES:
            label = spec if len(spec) < 30 else spec[:27] + "..."
            x = rng.standard_normal((2,) + shape).astype(np.float32)

            # torch -> neurofv
            torch.manual_seed(1)
            model = nt.build_sequential(spec, shape, classes)
            with torch.no_grad():
                for mod in model:
                    if isinstance(mod, torch.nn.BatchNorm3d):
                        mod.running_mean.uniform_(-0.3, 0.3)
                        mod.running_var.uniform_(0.5, 2.0)
                        mod.weight.uniform_(0.5, 1.5)
                        mod.bias.uniform_(-0.2, 0.2)
                        mod.num_batches_tracked.fill_(7)
            path = os.path.join(tmp, "from_torch.safetensors")
            nt.export_model(model, path, shape, arch=None)
            want_y, want_g = torch_reference(model, x, 0)
            got_y, got_g = neurofv_run(path, x, 0, tmp)
            ok &= compare(f"torch->neurofv {label}: logits", got_y, want_y, 1e-4)
            ok &= compare(f"torch->neurofv {label}: input gradient", got_g, want_g, 1e-3)

            # neurofv -> torch
            path2 = os.path.join(tmp, "from_neurofv.safetensors")
            c, d, h, w = shape
            r = subprocess.run([BIN, "inspect", "--arch", spec, "--shape", f"{w},{h},{d}", "--classes", str(classes),
                                "--seed", "9", "--save", path2], capture_output=True, text=True)
            if r.returncode:
                print(f"FAIL neurofv could not save {label}: {r.stderr.strip()}")
                ok = False
                continue
            model2, meta = nt.import_model(path2)
            # the torch model re-derived from its modules is the same architecture
            same = str(nt.build_sequential(nt.spec_from_sequential(model2), shape)) == str(model2)
            print(f"{'ok  ' if same else 'FAIL'} neurofv->torch {label}: spec from the torch modules matches")
            ok &= same
            want_y, want_g = torch_reference(model2, x, 0)
            got_y, got_g = neurofv_run(path2, x, 0, tmp)
            ok &= compare(f"neurofv->torch {label}: logits", got_y, want_y, 1e-4)
            ok &= compare(f"neurofv->torch {label}: input gradient", got_g, want_g, 1e-3)
            # PyTorch's default init bound 1/sqrt(fan_in) holds for neurofv's init
            for name, p in model2.state_dict().items():
                if name.endswith("weight") and p.dim() >= 2:
                    bound = 1 / np.sqrt(p[0].numel())
                    inside = float(p.abs().max()) <= bound * (1 + 1e-6)
                    ok &= inside
                    if not inside:
                        print(f"FAIL {name}: init exceeds 1/sqrt(fan_in)")
        # Training: weight gradients at the full ref4 grid (large reductions) and on the small net.
        ok &= training_parity("ref4", (1, 91, 109, 91), 3, tmp, rng)
        ok &= training_parity(CASES[1][0], CASES[1][1], 1, tmp, rng)
    print("torch parity:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
