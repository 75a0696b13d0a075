#!/usr/bin/env bash
# make test-browser: generates each kind of report page from tiny inputs (a
# 6 mm synthetic lesion cohort, a small model trained one epoch) and opens
# them in headless Chromium, offline (tools/viewer/test-browser.mjs); checks
# the viewer volumes against the runs' float32 NIfTI with nibabel
# (check_viewer_volumes.py).  Pages: compare's report, the same without the
# bundle (the PNG fallback), explain's index.html, and the demo's report page
# (tools/demo.sh's page writer on the same outputs).  Screenshots of the
# viewers go to $OUT/shots.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=${NEUROFV_BIN:-$root/build/neurofv}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${TEST_BROWSER_OUT:-$root/build/test-browser}
t0=$SECONDS
rm -rf "$OUT"
mkdir -p "$OUT/shots"
cd "$OUT"
run() { "$@" >>"$OUT/log.txt" 2>&1 || { tail -20 "$OUT/log.txt" >&2; echo "test-browser: failed: $*" >&2; exit 1; }; }
run "$BIN" synth --task lesion --n 12 --voxel 6 --lesion-size 24,30 --seed 3 --split 50/0/50 --out coh
run "$BIN" train --data coh/labels.csv --arch "conv(4,k3,p1) relu maxpool(2) conv(4,k3,p1) relu flatten linear(3)" \
    --voxel 6 --shape 31,37,31 --epochs 1 --batch 2 --out model.safetensors --quiet
cmp=(compare --model model.safetensors --target logit:all --truth coh --steps 4 --configs none,fourier)
run "$BIN" "${cmp[@]}" --out compare
# The demo's layout: the report page in report/compare, the runs' files (and
# the viewer scripts) in runs/compare, linked relatively.
run "$BIN" "${cmp[@]}" --out report/compare --runs runs/compare
NEUROFV_VIEWER_DIR=/nonexistent run "$BIN" "${cmp[@]}" --out compare-noviewer
run "$BIN" explain --model model.safetensors --data coh/labels.csv --split test --method saliency --truth coh --out explain
# The demo's report page: its class-logit section as tools/demo.sh writes it
# (neurofv viewer's panel, then per logit a "view" link and the PNGs).
# As tools/demo.sh: the visualization's files outside the page's folder (demo/),
# in runs/vis/logits, as seen from demo/.
run "$BIN" visualize --model model.safetensors --target logit:all --steps 4 --importance on --out runs/vis/logits
mkdir -p demo
vols=$(cd demo && for p in ../runs/vis/logits/*_overlay.png; do echo "${p%_overlay.png}.nii.gz"; done)
run "$BIN" viewer --report demo --html demo/viewer_panel.html --background template $vols
{
    echo '<!DOCTYPE html><html><head><meta charset="utf-8"><title>demo-like</title></head><body><h2>Class logits</h2>'
    cat demo/viewer_panel.html
    i=0
    for v in $vols; do
        b=${v%.nii.gz}
        echo "<p><a href=\"#v$i\">view</a> <a href=\"$v\">NIfTI</a><br><img src=\"${b}_overlay.png\"><img src=\"${b}_importance.png\"></p>"
        i=$((i + 1))
    done
    echo '</body></html>'
} >demo/index.html
pages=(compare/index.html compare-noviewer/index.html report/compare/index.html explain/index.html demo/index.html)
echo "test-browser: pages made in $((SECONDS - t0)) s" >&2
"$PYTHON" "$here/check_viewer_volumes.py" compare report/compare=runs/compare explain demo=runs/vis/logits
node "$here/test-browser.mjs" "$OUT/shots" "${pages[@]}"
echo "test-browser: $((SECONDS - t0)) s" >&2
