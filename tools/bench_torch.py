#!/usr/bin/env python3
"""The PyTorch peer for `neurofv bench`: ref4 (the preset in src/model/model_spec.c) at 2 mm on this machine,
or with --model NAME a graph model of tools/torch_graph_models.py (resnet18: MONAI's 3D ResNet-18 at 64^3;
resnet10-small, densenet-small, sfcn, notebook) at its input shape, --export FILE writing the same
model as ONNX for `neurofv bench --model FILE`.

Times, with medians over --reps runs after a warm-up:
  vis    one feature-visualization step at batch 1: forward in eval mode, backward
         to the input only (parameters frozen), Adam update of the input;
  train  one training step at --batch (default 4): forward in training mode,
         softmax cross-entropy, backward, Adam update of the parameters.
  vis8   the same step on 8 inputs in one batch; train8, eval4 (no_grad
         forward of 4 volumes), all with --json (rows named as in
         `neurofv bench --json`, which `make bench` puts side by side).
Prints one line per measurement: `torch <what> median_ms=<m> per_s=<rate>`.
Run with Debian's interpreter: /usr/bin/python3 tools/bench_torch.py
(--device cuda: on an NVIDIA GPU with a CUDA build of PyTorch; each timed
step ends with torch.cuda.synchronize(), so the median is the whole step).
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn

DEVICE = torch.device("cpu")  # set from --device in main()


def ref4(classes=3, in_shape=(91, 109, 91)):
    layers, c = [], 1
    d = list(in_shape)
    for out in (8, 16, 32, 64):
        layers += [nn.Conv3d(c, out, 3, padding=1), nn.BatchNorm3d(out), nn.ReLU(), nn.MaxPool3d(2)]
        c = out
        d = [s // 2 for s in d]
    layers += [nn.Flatten(), nn.Dropout(0.5), nn.Linear(c * d[0] * d[1] * d[2], classes)]
    return nn.Sequential(*layers)


def synchronize():
    """Waits for the GPU's queued work (a no-op on the CPU), so that a host
    clock around a step measures the step, not its launch."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def vis_step_fn(model, shape, batch):
    """One visualization step on `batch` inputs: eval forward, backward to the
    input only (parameters frozen), Adam on the input; objective: the first
    output of every sample (neurofv bench's output:0 with `batch` starts)."""
    x = torch.rand(batch, 1, *shape, device=DEVICE, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.05)

    def step():
        opt.zero_grad()
        y = model(x)
        (-y[:, 0].sum()).backward()
        opt.step()
    return step


def train_step_fn(model, shape, batch):
    x = torch.rand(batch, 1, *shape, device=DEVICE)
    y = torch.randint(0, 3, (batch,), device=DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return step


def eval_fn(model, shape, batch):
    x = torch.rand(batch, 1, *shape, device=DEVICE)

    def step():
        with torch.no_grad():
            model(x)
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4, help="training batch of the `train` line")
    ap.add_argument("--shape", default="91,109,91")
    ap.add_argument("--what", default="vis,train",
                    help="vis,train (the lines above), or with --json any of vis1,vis8,train4,train8,eval4")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda (PyTorch's CUDA build on an NVIDIA GPU)")
    ap.add_argument("--model", default="ref4",
                    help="ref4 (default) or a model of tools/torch_graph_models.py at its own input shape "
                         "(resnet18, resnet10-small, densenet-small, sfcn, notebook); --shape is then ignored")
    ap.add_argument("--export", default=None, help="--model NAME: also write it as ONNX to this file")
    ap.add_argument("--json", action="store_true",
                    help="print {rows: [{name, batch, median_ms}]} named as neurofv bench's rows")
    a = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(a.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: this PyTorch sees no CUDA GPU")
    device_name = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "CPU"
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shape = tuple(int(s) for s in a.shape.split(","))
    if a.model == "ref4":
        model = ref4(3, shape).to(DEVICE)
    else:
        import torch_graph_models  # the models and the ONNX export the conformance tests use
        model, cshape = torch_graph_models.build(a.model)
        shape = tuple(cshape[1:])
        if a.export:
            torch_graph_models.export_onnx(model, a.export, cshape)
        model = model.to(DEVICE)

    def frozen(on):
        for p in model.parameters():
            p.requires_grad_(not on)

    if a.json:
        import json
        what = a.what if a.what != "vis,train" else "vis1,vis8,train4,train8,eval4"
        rows = []
        for w in what.split(","):
            kind, batch = w.rstrip("0123456789"), int(w[len(w.rstrip("0123456789")):] or 1)
            if kind == "vis":
                model.eval(), frozen(True)
                fn, name = vis_step_fn(model, shape, batch), f"vis b{batch}"
            elif kind == "train":
                model.train(), frozen(False)
                fn, name = train_step_fn(model, shape, batch), f"train b{batch}"
            elif kind == "eval":
                model.eval(), frozen(True)
                fn, name = eval_fn(model, shape, batch), f"eval b{batch}"
            else:
                ap.error(f"--what: unknown item {w!r}")
            ms = median_ms(fn, a.reps, a.warmup)
            rows.append({"name": name, "batch": batch, "median_ms": ms})
        print(json.dumps({"torch": torch.__version__, "device": device_name, "threads": a.threads, "reps": a.reps,
                          "rows": rows}, indent=1))
        return

    if "vis" in a.what:
        model.eval()
        frozen(True)
        ms = median_ms(vis_step_fn(model, shape, 1), a.reps, a.warmup)
        print(f"torch vis_step batch=1 median_ms={ms:.1f} per_s={1000.0 / ms:.2f}")
        frozen(False)

    if "train" in a.what:
        model.train()
        ms = median_ms(train_step_fn(model, shape, a.batch), a.reps, a.warmup)
        print(f"torch train_step batch={a.batch} median_ms={ms:.1f} volumes_per_s={a.batch * 1000.0 / ms:.2f}")


if __name__ == "__main__":
    main()
