"""PyTorch <-> neurofv model files (safetensors), without the safetensors package.

    import neurofv_torch as nt
    model = nt.build_sequential("conv(8,k3,p1) bn relu maxpool(2) flatten linear(2)", input_shape=(1, 24, 24, 24))
    nt.export_model(model, "m.safetensors", input_shape=(1, 24, 24, 24), classes=["a", "b"])
    model, meta = nt.import_model("m.safetensors")      # an eval-mode nn.Sequential

A neurofv model file is a safetensors file whose tensors are the state_dict()
of an nn.Sequential (0.weight, 1.running_mean, ...) and whose __metadata__
holds arch (the layer spec, see include/neurofv/model.h), input_shape (C,D,H,W),
voxel_mm, affine (16 numbers, row-major), norm, head, classes (a JSON list).

Command line:
    python3 tools/neurofv_torch.py export TORCH_FILE OUT.safetensors --input-shape 1,91,109,91 [--classes a,b]
        TORCH_FILE: torch.save()d nn.Sequential (whole module) or a state_dict with --arch SPEC
    python3 tools/neurofv_torch.py import MODEL.safetensors OUT.pt   (torch.save of the nn.Sequential)
"""
import argparse
import json
import re
import struct
import sys

import numpy as np
import torch
from torch import nn

PRESETS = {
    "ref4": "conv(8,k3,p1) bn relu maxpool(2) conv(16,k3,p1) bn relu maxpool(2) "
            "conv(32,k3,p1) bn relu maxpool(2) conv(64,k3,p1) bn relu maxpool(2) flatten dropout(0.5) linear(classes)",
    "notebook": "conv(8,k3) elu(1) maxpool(2) conv(32,k3) elu(1) maxpool(3) conv(64,k3) elu(1) maxpool(2) "
                "conv(64,k3) elu(1) flatten linear(100) elu(1) linear(classes)",
}

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
DTYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


# ---- safetensors by hand -------------------------------------------------------

def save_safetensors(path, tensors, metadata=None):
    """tensors: ordered dict name -> numpy array (little-endian written)."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset, blobs = 0, []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dt = DTYPE_NAMES[arr.dtype]
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)
    import os
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for safetensors")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} beyond the file")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        dt = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        b0, b1 = info["data_offsets"]
        if base + b1 > len(data):
            raise ValueError(f"{path}: tensor {name} beyond the file")
        arr = np.frombuffer(data[base + b0:base + b1], dtype=dt).reshape(info["shape"])
        tensors[name] = arr.astype(dt.newbyteorder("="))
    return tensors, meta


# ---- architecture spec <-> nn.Sequential -------------------------------------

def _triple(s):
    parts = [int(v) for v in s.split("x")]
    return tuple(parts * 3) if len(parts) == 1 else tuple(parts)


def parse_spec(spec, classes=None):
    """List of (word, args) from a spec or preset."""
    spec = PRESETS.get(spec, spec)
    out = []
    for m in re.finditer(r"([a-z]+)\s*(?:\(([^)]*)\))?", spec):
        word, args = m.group(1), [a.strip() for a in (m.group(2) or "").split(",") if a.strip()]
        if word == "linear" and args and args[0] == "classes":
            args[0] = str(classes)
        out.append((word, args))
    return out


def build_sequential(spec, input_shape, classes=None):
    """nn.Sequential for a spec on input (C, D, H, W)."""
    c = input_shape[0]
    feats = None
    mods = []
    x = torch.zeros((1,) + tuple(input_shape))
    for word, args in parse_spec(spec, classes):
        if word == "conv":
            k, s, p, bias = (3, 3, 3), (1, 1, 1), (0, 0, 0), True
            for a in args[1:]:
                if a == "nobias": bias = False
                elif a[0] == "k": k = _triple(a[1:])
                elif a[0] == "s": s = _triple(a[1:])
                elif a[0] == "p": p = _triple(a[1:])
            mod = nn.Conv3d(x.shape[1], int(args[0]), k, stride=s, padding=p, bias=bias)
        elif word in ("maxpool", "avgpool"):
            k = _triple(args[0])
            s = _triple(args[1]) if len(args) > 1 else k
            p = _triple(args[2]) if len(args) > 2 else (0, 0, 0)
            mod = (nn.MaxPool3d if word == "maxpool" else nn.AvgPool3d)(k, s, p)
        elif word == "bn":
            mod = nn.BatchNorm3d(x.shape[1], eps=float(args[0]) if args else 1e-5)
        elif word == "relu": mod = nn.ReLU()
        elif word == "lrelu": mod = nn.LeakyReLU(float(args[0]) if args else 0.01)
        elif word == "elu": mod = nn.ELU(float(args[0]) if args else 1.0)
        elif word == "dropout": mod = nn.Dropout(float(args[0]) if args else 0.5)
        elif word == "flatten": mod = nn.Flatten()
        elif word == "gap": mod = nn.AdaptiveAvgPool3d(1)
        elif word == "linear":
            mod = nn.Linear(x.shape[1], int(args[0]), bias=not (len(args) > 1 and args[1] == "nobias"))
        else:
            raise ValueError(f"unknown layer {word}")
        mods.append(mod)
        with torch.no_grad():
            x = mod.eval()(x)
    return nn.Sequential(*mods)


def _t(v):
    v = tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)
    return str(v[0]) if v[0] == v[1] == v[2] else "x".join(str(i) for i in v)


def spec_from_sequential(model):
    words = []
    for m in model:
        if isinstance(m, nn.Conv3d):
            w = f"conv({m.out_channels},k{_t(m.kernel_size)}"
            if _t(m.stride) != "1": w += f",s{_t(m.stride)}"
            if _t(m.padding) != "0": w += f",p{_t(m.padding)}"
            words.append(w + ("" if m.bias is not None else ",nobias") + ")")
        elif isinstance(m, (nn.MaxPool3d, nn.AvgPool3d)):
            name = "maxpool" if isinstance(m, nn.MaxPool3d) else "avgpool"
            if isinstance(m, nn.MaxPool3d) and (m.dilation not in (1, (1, 1, 1)) or m.ceil_mode):
                raise ValueError("MaxPool3d with dilation/ceil_mode is not supported")
            if isinstance(m, nn.AvgPool3d) and (m.ceil_mode or not m.count_include_pad):
                raise ValueError("AvgPool3d needs ceil_mode=False, count_include_pad=True")
            k, s, p = _t(m.kernel_size), _t(m.stride if m.stride is not None else m.kernel_size), _t(m.padding)
            words.append(f"{name}({k})" if (k == s and p == "0") else f"{name}({k},{s})" if p == "0" else f"{name}({k},{s},{p})")
        elif isinstance(m, nn.BatchNorm3d): words.append("bn" if m.eps == 1e-5 else f"bn({m.eps})")
        elif isinstance(m, nn.ReLU): words.append("relu")
        elif isinstance(m, nn.LeakyReLU): words.append(f"lrelu({m.negative_slope})")
        elif isinstance(m, nn.ELU): words.append(f"elu({m.alpha})")
        elif isinstance(m, nn.Dropout): words.append(f"dropout({m.p})")
        elif isinstance(m, nn.Flatten): words.append("flatten")
        elif isinstance(m, nn.AdaptiveAvgPool3d) and m.output_size in (1, (1, 1, 1)): words.append("gap")
        elif isinstance(m, nn.Linear):
            words.append(f"linear({m.out_features}" + ("" if m.bias is not None else ",nobias") + ")")
        else:
            raise ValueError(f"module {m} has no neurofv counterpart")
    return " ".join(words)


# ---- export / import ------------------------------------------------------------

def export_model(model, path, input_shape, classes=None, head=None, voxel_mm=(2.0, 2.0, 2.0), affine=None,
                 norm="zscore-nonzero", arch=None):
    """Write an nn.Sequential as a neurofv model file."""
    arch = arch or spec_from_sequential(model)
    sd = model.state_dict()
    n_out = [m for m in model if isinstance(m, nn.Linear)][-1].out_features
    if head is None:
        head = "softmax" if n_out > 1 else "binary"
    if classes is None:
        classes = [str(i) for i in range(n_out if head == "softmax" else 2 if head == "binary" else 0)]
    if affine is None:
        c, d, h, w = input_shape
        n = (w, h, d)
        affine = np.eye(4)
        for a in range(3):
            affine[a, a] = voxel_mm[a]
            affine[a, 3] = -0.5 * (n[a] - 1) * voxel_mm[a]
    tensors = {}
    for k, v in sd.items():
        a = v.detach().cpu().numpy()
        tensors[k] = a.astype(np.int64) if k.endswith("num_batches_tracked") else a.astype(np.float32)
    meta = {"format": "neurofv-model-1", "arch": arch, "input_shape": ",".join(str(int(v)) for v in input_shape),
            "voxel_mm": ",".join(repr(float(v)) for v in voxel_mm),
            "affine": ",".join(repr(float(v)) for v in np.asarray(affine, dtype=float).ravel()),
            "norm": norm, "head": head, "classes": json.dumps(list(classes))}
    save_safetensors(path, tensors, meta)


def import_model(path):
    """(nn.Sequential in eval mode, metadata dict) from a neurofv model file."""
    tensors, meta = load_safetensors(path)
    shape = tuple(int(v) for v in meta["input_shape"].split(","))
    model = build_sequential(meta["arch"], shape)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if not k.startswith("optim.")}
    model.load_state_dict(sd, strict=True)
    return model.eval(), meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("torch_file"); e.add_argument("out")
    e.add_argument("--input-shape", required=True, help="C,D,H,W")
    e.add_argument("--arch", help="spec, needed when torch_file is a state_dict")
    e.add_argument("--classes", help="comma-separated class names")
    e.add_argument("--head", choices=["softmax", "binary", "regression"])
    e.add_argument("--voxel", type=float, default=2.0)
    i = sub.add_parser("import")
    i.add_argument("model"); i.add_argument("out")
    a = ap.parse_args(argv)
    if a.cmd == "export":
        shape = tuple(int(v) for v in a.input_shape.split(","))
        obj = torch.load(a.torch_file, map_location="cpu")
        if isinstance(obj, nn.Sequential):
            model = obj
        else:
            if not a.arch:
                sys.exit("a state_dict needs --arch SPEC")
            model = build_sequential(a.arch, shape)
            model.load_state_dict(obj)
        export_model(model, a.out, shape, classes=a.classes.split(",") if a.classes else None, head=a.head,
                     voxel_mm=(a.voxel,) * 3)
    else:
        model, _ = import_model(a.model)
        torch.save(model, a.out)


if __name__ == "__main__":
    main()
