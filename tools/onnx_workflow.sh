#!/usr/bin/env bash
# PyTorch -> ONNX -> neurofv, as a MONAI/PyTorch user does it: `make onnx-demo`
# (or `bash tools/onnx_workflow.sh [DIR]`, default demo-onnx/).
#
#   1. neurofv synth: a 3-shape lesion cohort on the 4 mm grid (46x55x46), train/val/test from labels.csv
#   2. tools/train_torch_resnet.py: MONAI's ResNet-10 layout (tools/torch_graph_models.py, widen_factor
#      0.25, conv1_t_stride 2) trained in PyTorch on neurofv's preprocessing (zscore-nonzero on the
#      cohort's grid), exported with torch.onnx.export (opset 13, dynamic batch)
#   3. neurofv import with --template (the cohort's grid and affine), --norm zscore-nonzero and the
#      class names in torch's output order; then a parity check: neurofv's logits on torch's
#      preprocessed test inputs (neurofv inspect --input --dump) against torch's
#   4. neurofv eval on the test split: the accuracy must equal torch's (at most one subject apart), and
#      the per-subject probabilities (neurofv's own preprocessing) are compared with torch's
#   5. neurofv visualize: every class logit and channels 0-7 of layer2.0's output; the best class
#      logit's overlay and the most excitable channel's picture are copied to docs/
#   6. a summary with the accuracies and stage times (DIR/summary.txt)
#
# Environment: NEUROFV (binary, default build/neurofv, else ./neurofv), PYTHON (default /usr/bin/python3),
# ONNX_N (160), ONNX_LESION (24,32 as make demo: synth's default 16-22 mm lesions are 4-5 voxels
# across at 4 mm and the model stays near chance), ONNX_EPOCHS (40), ONNX_TRAIN_BUDGET (seconds; 0 = none),
# ONNX_WIDEN (0.25), ONNX_LOGIT_STEPS (64), ONNX_LAYER (layer2.0.relu_1: the output of MONAI's layer2[0] block, after its
# ReLU; neurofv names the residual Add itself `layer2.0`), ONNX_LAYER_CHANNELS (0-7, or all),
# ONNX_LAYER_STEPS (32),
# ONNX_DOCS (docs; empty = do not copy the pictures).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=${1:-${DIR:-demo-onnx}}
PY=${PYTHON:-/usr/bin/python3}
if [ -n "${NEUROFV:-}" ]; then BIN=$NEUROFV
elif [ -x build/neurofv ]; then BIN=$ROOT/build/neurofv
else BIN=$ROOT/neurofv; fi
N=${ONNX_N:-160}
LESION=${ONNX_LESION:-24,32}
EPOCHS=${ONNX_EPOCHS:-40}
BUDGET=${ONNX_TRAIN_BUDGET:-0}
WIDEN=${ONNX_WIDEN:-0.25}
LOGIT_STEPS=${ONNX_LOGIT_STEPS:-64}
LAYER=${ONNX_LAYER:-layer2.0.relu_1}
LAYER_STEPS=${ONNX_LAYER_STEPS:-32}
LAYER_CHANNELS=${ONNX_LAYER_CHANNELS:-0-7}
DOCS=${ONNX_DOCS-docs}
VOXEL=4
# The class-logit recipe of make demo (its `all-no-mask` comparison configuration): Fourier 1/f
# parameterization, jitter/scale/rotation, L2, TV and blur.
LOGIT_OPTS=(--param fourier --decay 1 --pad 4 --jitter 3 --scale 0.9,1.1 --rotate 10 --l2 2 --tv 2 --blur 1 --blur-every 4)
# Inner channels: make demo's conv recipe (Fourier inside the brain, no per-step transforms).
LAYER_OPTS=(--param fourier --mask brain)

[ -x "$BIN" ] || { echo "onnx_workflow: no neurofv binary at $BIN (make, or set NEUROFV)" >&2; exit 1; }
"$PY" -c 'import torch, nibabel, onnx, numpy' || { echo "onnx_workflow: $PY lacks torch/nibabel/onnx/numpy" >&2; exit 1; }
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
TIMES=$DIR/times.tsv
: >"$TIMES"
log() { echo "== onnx-demo: $*" >&2; }
stage() {
    local name=$1 t0 t1 dt
    shift
    log "stage $name"
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    printf '%s\t%s\n' "$name" "$dt" >>"$TIMES"
    log "$name: $dt s"
}

synth() {
    rm -rf "$DIR/data"
    "$BIN" synth --task lesion --n "$N" --voxel "$VOXEL" --lesion-size "$LESION" --seed 1 --out "$DIR/data" 2>&1 | tail -1
    # The grid the cohort is on, and the split.
    "$PY" - "$DIR/data" <<'EOF'
import collections, csv, sys, nibabel as nib
d = sys.argv[1]
t = nib.load(f"{d}/template.nii.gz")
print(f"grid {'x'.join(map(str, t.shape))} (x, y, z) at {t.header.get_zooms()[0]:g} mm, {''.join(nib.aff2axcodes(t.affine))}")
c = collections.Counter((r["split"], r["label"]) for r in csv.DictReader(open(f"{d}/labels.csv")))
for s in ("train", "val", "test"):
    print(f"  {s}: " + ", ".join(f"{l} {n}" for (sp, l), n in sorted(c.items()) if sp == s))
EOF
}

train() {
    rm -f "$DIR/resnet10.onnx" "$DIR/torch_metrics.json"
    OMP_NUM_THREADS=2 "$PY" tools/train_torch_resnet.py --data "$DIR/data" --out "$DIR" --widen "$WIDEN" \
        --epochs "$EPOCHS" --time-budget "$BUDGET" --seed 1 --threads 2 2>&1 | tee "$DIR/train_torch.txt"
}

CLASSES=
import_model() {
    CLASSES=$("$PY" -c 'import json, sys; print(",".join(json.load(open(sys.argv[1]))["classes"]))' "$DIR/torch_metrics.json")
    "$BIN" import "$DIR/resnet10.onnx" --out "$DIR/resnet10.safetensors" --template "$DIR/data/template.nii.gz" \
        --norm zscore-nonzero --classes "$CLASSES"
    # The network alone: neurofv on torch's preprocessed test inputs.
    "$BIN" inspect "$DIR/resnet10.safetensors" --input "$DIR/parity_x.bin" --dump "$DIR/parity_neurofv_logits.bin" >/dev/null
    "$PY" - "$DIR" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
t = np.fromfile(f"{d}/parity_torch_logits.bin", np.float32)
k = 3
t = t.reshape(-1, k)
n = np.fromfile(f"{d}/parity_neurofv_logits.bin", np.float32)[: t.size].reshape(-1, k)
err = float(np.abs(t - n).max())
same = int((t.argmax(1) == n.argmax(1)).sum())
print(f"parity (network): {len(t)} test inputs preprocessed by torch: max |logit diff| {err:.2e} "
      f"(|logit| up to {np.abs(t).max():.2f}), same class {same}/{len(t)}")
if err > 1e-3 * max(1.0, float(np.abs(t).max())) or same != len(t):
    sys.exit("parity (network): neurofv's logits differ from torch's")
EOF
}

evaluate() {
    "$BIN" eval --model "$DIR/resnet10.safetensors" --data "$DIR/data/labels.csv" --split test \
        --out "$DIR/neurofv_test_predictions.csv" 2>&1 | tee "$DIR/eval.txt"
    # Preprocessing: neurofv read and normalized each subject itself; its probabilities against torch's.
    "$PY" - "$DIR" <<'EOF'
import csv, os, sys
d = sys.argv[1]
# neurofv writes the paths as it resolved them (relative to the CSV): key by file name
t = {os.path.basename(r["path"]): r for r in csv.DictReader(open(f"{d}/torch_test_predictions.csv"))}
n = {os.path.basename(r["path"]): r for r in csv.DictReader(open(f"{d}/neurofv_test_predictions.csv"))}
assert set(t) == set(n), "the two prediction files list different subjects"
cols = [c for c in next(iter(t.values())) if c.startswith("p_")]
err = max(abs(float(t[p][c]) - float(n[p][c])) for p in t for c in cols)
same = sum(t[p]["prediction"] == n[p]["prediction"] for p in t)
print(f"parity (preprocessing + network): {len(t)} test subjects: max |probability diff| {err:.2e}, "
      f"same prediction {same}/{len(t)}")
if err > 1e-3:
    sys.exit("parity: neurofv's probabilities differ from torch's: the preprocessing does not match")
EOF
}

vis_logits() {
    rm -rf "$DIR/vis/logits"
    "$BIN" visualize --model "$DIR/resnet10.safetensors" --target logit:all --steps "$LOGIT_STEPS" "${LOGIT_OPTS[@]}" \
        --out "$DIR/vis/logits" 2>&1 | grep -v '^visualize [0-9]' | tee "$DIR/vis_logits.txt"
}

vis_layer() {
    local targets=() c
    if [ "$LAYER_CHANNELS" = all ]; then targets=(--target "$LAYER:all")
    else for c in $(seq "${LAYER_CHANNELS%-*}" "${LAYER_CHANNELS#*-}"); do targets+=(--target "$LAYER:$c"); done; fi
    rm -rf "$DIR/vis/layer"
    "$BIN" visualize --model "$DIR/resnet10.safetensors" "${targets[@]}" --steps "$LAYER_STEPS" "${LAYER_OPTS[@]}" \
        --background none --out "$DIR/vis/layer" 2>&1 | grep -v '^visualize [0-9]' >"$DIR/vis_layer.txt"
    tail -1 "$DIR/vis_layer.txt" >&2
}

T_ALL0=$(date +%s.%N)
stage synth synth
stage train-torch train
stage import import_model
stage eval evaluate
stage visualize-logits vis_logits
stage visualize-layer vis_layer
TOTAL=$(awk -v a="$T_ALL0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
printf 'total\t%s\n' "$TOTAL" >>"$TIMES"

# Pictures for the README: the class logit of the highest objective (without transforms) among the
# classes, and the channel of LAYER with the highest objective.  (printed as "<target>: objective A
# (last step, with transforms), B without transforms")
best_target() { sed -n 's/^\([^ ]*\): objective .*, \([-0-9.e+]*\) without transforms$/\2 \1/p' "$1" | sort -g | tail -1 | cut -d' ' -f2; }
LOGIT_BEST=$(best_target "$DIR/vis_logits.txt")
LAYER_BEST=$(best_target "$DIR/vis_layer.txt")
stem() { echo "$1" | tr ':@,' '___'; }
LOGIT_PNG=$DIR/vis/logits/$(stem "$LOGIT_BEST")_overlay.png
LAYER_PNG=$DIR/vis/layer/$(stem "$LAYER_BEST")_ortho.png
for f in "$LOGIT_PNG" "$LAYER_PNG"; do [ -f "$f" ] || { echo "onnx_workflow: $f was not written" >&2; exit 1; }; done
if [ -n "$DOCS" ]; then
    mkdir -p "$DOCS"
    cp "$LOGIT_PNG" "$DOCS/onnx_resnet10_logit_${LOGIT_BEST#logit:}.png"
    cp "$LAYER_PNG" "$DOCS/onnx_resnet10_layer_channel.png"
    log "pictures: $DOCS/onnx_resnet10_logit_${LOGIT_BEST#logit:}.png ($LOGIT_BEST), $DOCS/onnx_resnet10_layer_channel.png ($LAYER_BEST)"
fi

# ---- summary ------------------------------------------------------------------
NFV_ACC=$(awk '$1 == "accuracy" { print $2 }' "$DIR/eval.txt")
"$PY" - "$DIR" "$NFV_ACC" "$LOGIT_BEST" "$LAYER_BEST" <<'EOF' | tee "$DIR/summary.txt"
import json, sys
d, nfv_acc, logit_best, layer_best = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
m = json.load(open(f"{d}/torch_metrics.json"))
n = m["test_n"]
print(f"classes (output order): {','.join(m['classes'])}; MONAI resnet10 widen_factor {m['widen_factor']}, "
      f"{m['parameters']:,} parameters, input {'x'.join(map(str, m['input_shape']))}")
print("torch val accuracy per epoch: " + " ".join(f"{h['val_accuracy']:.3f}" for h in m["history"]))
print(f"torch  : best val accuracy {m['val_accuracy']:.4f} (epoch {m['best_epoch']} of {m['epochs_run']}), "
      f"test accuracy {m['test_accuracy']:.4f} ({m['test_correct']}/{n})")
print(f"neurofv: test accuracy {nfv_acc:.4f} ({round(nfv_acc * n)}/{n})")
print(f"pictures: {logit_best} (class logit), {layer_best} (inner channel)")
print("stage times (s):")
for line in open(f"{d}/times.tsv"):
    k, v = line.split()
    print(f"  {k:18s} {float(v):7.1f}")
diff = abs(round(nfv_acc * n) - m["test_correct"])
if diff > 1:
    sys.exit(f"onnx_workflow: neurofv's test accuracy differs from torch's by {diff} subjects")
print(f"neurofv and torch agree on the test accuracy ({diff} subject(s) apart)")
EOF
