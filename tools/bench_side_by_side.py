#!/usr/bin/env python3
"""`make bench`: neurofv bench --json and tools/bench_torch.py --json in one
invocation, on the same machine, one after the other, and the side-by-side
table with ratios (PyTorch time / neurofv time per sample: > 1 means neurofv
is faster).  The header names the date, machine, devices and command so the
table can be quoted as it is (the README's performance section is this output).

Usage: /usr/bin/python3 tools/bench_side_by_side.py [--neurofv build/neurofv]
       [--reps N] [--torch-reps N] [--torch-device cpu|cuda] [--no-torch] [--no-cold]
       [--graph NAME] [-- extra neurofv bench options, e.g. --device gpu]

--graph NAME: a graph model of tools/torch_graph_models.py (resnet18: MONAI's
3D ResNet-18 at 64^3, random weights) instead of ref4: exported to ONNX by
bench_torch.py and timed by neurofv bench --model on that file.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_json(cmd):
    """Runs cmd (progress on stderr passes through) and parses its stdout."""
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_side_by_side: {cmd[0]} failed with exit status {p.returncode}")
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neurofv", default="build/neurofv")
    ap.add_argument("--reps", type=int, default=5, help="neurofv bench --reps (default 5)")
    ap.add_argument("--torch-reps", type=int, default=3, help="bench_torch.py --reps (default 3: its steps are slow)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="PyTorch threads (default: all cores)")
    ap.add_argument("--torch-device", default="cpu", help="bench_torch.py --device: cpu (default) or cuda")
    ap.add_argument("--no-torch", action="store_true", help="neurofv only (no PyTorch installed)")
    ap.add_argument("--no-cold", action="store_true", help="pass --no-cold to neurofv bench")
    ap.add_argument("--graph", default=None,
                    help="a model of tools/torch_graph_models.py (resnet18, resnet10-small, densenet-small, sfcn) "
                         "instead of ref4, the same file for both")
    ap.add_argument("extra", nargs="*", help="more neurofv bench options (after --)")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    model_args, tmp = [], None
    if a.graph:
        import tempfile
        tmp = tempfile.TemporaryDirectory()
        onnx_path = os.path.join(tmp.name, f"{a.graph}.onnx")
        p = subprocess.run([sys.executable, os.path.join(here, "bench_torch.py"), "--model", a.graph, "--export",
                            onnx_path, "--what", "none"])
        if p.returncode != 0 or not os.path.exists(onnx_path):
            sys.exit(f"bench_side_by_side: exporting {a.graph} to ONNX failed")
        model_args = ["--model", onnx_path]

    t0 = time.time()
    load0 = os.getloadavg()[0]
    nfv_cmd = ([a.neurofv, "bench", "--json", "--reps", str(a.reps)] + (["--no-cold"] if a.no_cold else []) + model_args
               + a.extra)
    nfv = run_json(nfv_cmd)
    torch_rows, torch_note = {}, "not run (--no-torch)"
    if not a.no_torch:
        tcmd = [sys.executable, os.path.join(here, "bench_torch.py"), "--json", "--reps", str(a.torch_reps),
                "--threads", str(a.threads), "--warmup", "1", "--what", "vis1,vis8,train4,train8,eval4", "--device", a.torch_device,
                "--model", a.graph or "ref4"]
        try:
            t = run_json(tcmd)
            torch_rows = {r["name"]: r for r in t["rows"]}
            torch_note = (f"PyTorch {t['torch']} on {t.get('device', 'CPU')}"
                          + (f", {t['threads']} threads" if t.get("device", "CPU") == "CPU" else "")
                          + f", medians of {t['reps']}")
        except (OSError, ValueError, SystemExit) as e:
            torch_note = f"PyTorch run failed: {e}"

    print(f"# make bench, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {time.time() - t0:.0f} s")
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}; "
          f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (above the CPU count, "
          f"other jobs shared the cores: compare the ratios, not the absolute times)")
    print(f"neurofv: {nfv['model']} on {nfv['device']} ({nfv['driver']}, kernels {nfv['kernel_config']}), "
          f"medians of {nfv['reps']} after {nfv['warmup']} warm-up; command: {' '.join(nfv_cmd)}")
    same = f"the same {a.graph} exported to ONNX" if a.graph else "ref4 layout"
    print(f"peer: {torch_note}; same model ({same}, random weights), same shapes, the same machine, one run")
    peak = nfv.get("peak_gflops") or 0
    print(f"device peak: {peak:.0f} GFLOP/s ({nfv.get('peak_source', '')})" if peak else "device peak: unknown")
    print()
    print("| step | batch | neurofv ms | neurofv ms/sample | GFLOP/s | % peak | PyTorch ms | PyTorch ms/sample | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    extra = []
    for r in nfv["rows"]:
        if "median_ms" not in r or "batch" not in r:
            extra.append(r)
            continue
        t = torch_rows.get(r["name"])
        gf = f"{r['gflops']:.1f}" if "gflops" in r else ""
        share = f"{100 * r['peak_share']:.1f}" if "peak_share" in r else ""
        tms = f"{t['median_ms']:.1f}" if t else "—"
        tper = f"{t['median_ms'] / t['batch']:.1f}" if t else "—"
        ratio = f"{t['median_ms'] / r['median_ms']:.1f}x" if t else "—"
        print(f"| {r['name']} | {r['batch']} | {r['median_ms']:.1f} | {r['ms_per_sample']:.2f} | {gf} | {share} "
              f"| {tms} | {tper} | {ratio} |")
    for r in extra:
        v = f"{r['value']:.1f} {r['unit']}" if "value" in r else f"{r['median_ms'] / 1e3:.2f} s"
        print(f"| {r['name']} | | {v} | | | | | | |")
    rows = {r["name"]: r for r in nfv["rows"]}
    if "vis b1" in rows and "vis b8" in rows:
        print(f"\nvisualization batch 8 per target-step / batch 1 step: "
              f"{rows['vis b8']['ms_per_sample'] / rows['vis b1']['median_ms']:.2f} (issue 15 asks <= 0.6)")
    for s in nfv.get("skipped", []):
        print(f"skipped: {s}")


if __name__ == "__main__":
    main()
