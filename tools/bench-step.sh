#!/usr/bin/env bash
# Whole-step timings of one or more neurofv binaries on ref4 at 2 mm, in one
# run, interleaved (so machine load hits every binary alike):
#   vis    one visualization step at batch 1 (forward + input gradient + Adam):
#          (time of a 110-step run - time of a 10-step run) / 100, so start-up
#          and kernel builds cancel;
#   train  one training epoch of 16 subjects at batch 4 (4 steps + validation):
#          (4-epoch run - 1-epoch run) / 3.
# Medians over REPS rounds (default 3).  Used to show that the graph executor
# costs ref4 nothing: tools/bench-step.sh OLD_BINARY build/neurofv
# Usage: tools/bench-step.sh BINARY [BINARY ...]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
reps=${REPS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
first=$1
"$first" inspect --arch ref4 --classes 3 --save "$work/ref4.safetensors" >/dev/null
"$first" synth --task lesion --n 24 --seed 3 --out "$work/cohort" >/dev/null

calc() { awk "BEGIN { print $1 }"; }
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "bench-step: failed: $*" >&2; exit 1; }
  t1=$(date +%s.%N)
  calc "$t1 - $t0"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -A vis train
for r in $(seq "$reps"); do
  for b in "$@"; do
    v10=$(seconds "$b" visualize --model "$work/ref4.safetensors" --target logit:0 --batch 1 --steps 10 --out "$work/v10")
    v110=$(seconds "$b" visualize --model "$work/ref4.safetensors" --target logit:0 --batch 1 --steps 110 --out "$work/v110")
    vis[$b]+="$(calc "($v110 - $v10) / 100 * 1000") "
    t1=$(seconds "$b" train --data "$work/cohort/labels.csv" --arch ref4 --epochs 1 --batch 4 --seed 1 --quiet --out "$work/t1.safetensors")
    t4=$(seconds "$b" train --data "$work/cohort/labels.csv" --arch ref4 --epochs 4 --batch 4 --seed 1 --quiet --out "$work/t4.safetensors")
    train[$b]+="$(calc "($t4 - $t1) / 3") "
  done
done
printf '%-40s %18s %18s\n' binary "vis step (ms)" "train epoch (s)"
for b in "$@"; do
  printf '%-40s %18.1f %18.2f\n' "$b" "$(tr ' ' '\n' <<<"${vis[$b]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${train[$b]}" | grep . | median)"
done
