#!/usr/bin/env bash
# make test-mpi: neurofv built with MPI=1 under Open MPI's mpirun, 2 ranks on
# this machine, on a small cohort (40 subjects at 6 mm, a 31x37x31 grid).  Checks:
#   train      2 ranks = 1 rank with the same global batch (5: split 2 + 3),
#              every parameter within atol 1e-8 + rtol 1e-5 of its tensor's
#              magnitude after 2 epochs (SGD with momentum, class weights,
#              augmentation, dropout, synchronized BatchNorm)
#              (tools/mpi/compare_models.py).  With Adam the same run agrees
#              to rtol 1e-4 only: summing the gradient over ranks rounds
#              differently (~1e-7), and Adam's per-element normalization
#              turns that into ~2e-5 on elements whose gradient is near zero.
#   resume     1 epoch on 2 ranks, then --resume on 1 rank = 2 epochs on 1
#   eval       2-rank predictions CSV = 1-rank, byte for byte
#   visualize  4 targets on 2 ranks = 1 process: every NIfTI and PNG byte for
#              byte, the JSON logs but for their "seconds" (a wall time)
#   explain    2 ranks = 1 process: subject maps, means, subjects.csv, the
#              summary but for its seconds
#   merge      compare --shard 1/2 + 2/2 + --merge: results.csv = the
#              unsharded run's but for the seconds column; a shard of another
#              model is refused
#   slurm      --shard auto from SLURM_ARRAY_TASK_ID/MIN/MAX
#   failure    a corrupt volume on one rank stops both ranks, with its name,
#              within 120 s (a hang fails the check)
# Prints a line per failure and "N passed, N failed"; exits non-zero on any.
set -u
cd "$(dirname "$0")/.."
bin=${NEUROFV_MPI_BIN:-build-mpi/neurofv}
py=${PYTHON:-/usr/bin/python3}
run=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && run+=(--allow-run-as-root)
work=$(mktemp -d /tmp/nfv-mpi.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
check() { local what=$1; shift; if "$@" >"$work/check.log" 2>&1; then ok "$what"; else bad "$what"; tail -n 5 "$work/check.log"; fi; }
# JSON logs without their wall time.
strip_seconds() { grep -v '"seconds"' "$1"; }
same_tree() { # every file of $1 in $2 with the same bytes (JSON: but for seconds)
  local a=$1 b=$2 f rc=0
  for f in $(cd "$a" && find . -type f | sort); do
    case $f in
      *.json) cmp -s <(strip_seconds "$a/$f") <(strip_seconds "$b/$f") || { echo "differs: $f"; rc=1; } ;;
      *) cmp -s "$a/$f" "$b/$f" || { echo "differs: $f"; rc=1; } ;;
    esac
  done
  [ "$(cd "$a" && find . -type f | wc -l)" -eq "$(cd "$b" && find . -type f | wc -l)" ] || { echo "file counts differ"; rc=1; }
  return $rc
}

cd "$work"
"$OLDPWD/$bin" synth --n 40 --voxel 6 --seed 2 --out cohort >/dev/null 2>&1 || { echo "FAIL: synth"; exit 1; }
N=$OLDPWD/$bin
T=$OLDPWD/tools
arch="conv(8,k3,p1,nobias) bn relu maxpool(2) conv(16,k3,p1,nobias) bn relu maxpool(2) flatten dropout(0.3) linear(classes)"
train=(train --data cohort/labels.csv --arch "$arch" --voxel 6 --shape 31,37,31 --batch 5 --seed 3 --augment shift=1,flip
       --class-weights auto --quiet --optimizer sgd --lr 0.001)

"${run[@]}" -np 1 "$N" "${train[@]}" --epochs 2 --out one.safetensors >one.log 2>&1 || { cat one.log; bad "train on 1 rank"; }
"${run[@]}" -np 2 "$N" "${train[@]}" --epochs 2 --out two.safetensors >two.log 2>&1 || { cat two.log; bad "train on 2 ranks"; }
check "train: 2 ranks = 1 rank after 2 epochs (checkpoint, every parameter)" \
  "$py" "$T/mpi/compare_models.py" one.safetensors.ckpt two.safetensors.ckpt --rtol 1e-5 --atol 1e-8
adam=("${train[@]/sgd/adam}")
"${run[@]}" -np 1 "$N" "${adam[@]}" --epochs 2 --out onea.safetensors >onea.log 2>&1 || { cat onea.log; bad "Adam on 1 rank"; }
"${run[@]}" -np 2 "$N" "${adam[@]}" --epochs 2 --out twoa.safetensors >twoa.log 2>&1 || { cat twoa.log; bad "Adam on 2 ranks"; }
check "train with Adam: 2 ranks = 1 rank within rtol 1e-4" \
  "$py" "$T/mpi/compare_models.py" onea.safetensors.ckpt twoa.safetensors.ckpt --rtol 1e-4 --atol 1e-8
check "train: the 2-rank log has one row per epoch (rank 0 writes)" test "$(wc -l <two.safetensors.log.csv)" -eq 3

"${run[@]}" -np 2 "$N" "${train[@]}" --epochs 1 --out res.safetensors >res.log 2>&1 &&
  "${run[@]}" -np 1 "$N" "${train[@]}" --epochs 2 --resume --out res.safetensors >>res.log 2>&1 || { cat res.log; bad "resume run"; }
check "resume: 1 epoch on 2 ranks + --resume on 1 rank = 2 epochs on 1 rank" \
  "$py" "$T/mpi/compare_models.py" one.safetensors.ckpt res.safetensors.ckpt --rtol 1e-5 --atol 1e-8

"${run[@]}" -np 1 "$N" eval --model one.safetensors --data cohort/labels.csv --split all --out p1.csv >/dev/null 2>&1
"${run[@]}" -np 2 "$N" eval --model one.safetensors --data cohort/labels.csv --split all --out p2.csv >/dev/null 2>&1
check "eval: 2-rank predictions = 1-rank predictions" cmp p1.csv p2.csv

vis=(visualize --model one.safetensors --target logit:all --target conv2:1 --steps 12 --background none)
"${run[@]}" -np 1 "$N" "${vis[@]}" --out v1 >v1.out 2>v1.err || cat v1.err
"${run[@]}" -np 2 "$N" "${vis[@]}" --out v2 >v2.out 2>v2.err || cat v2.err
check "visualize: 4 targets on 2 ranks = 1 rank (every file)" same_tree v1 v2
check "visualize: same objective lines" cmp v1.out v2.out

cmpopts=(--model one.safetensors --target logit:all --steps 10 --configs none,l2 --seeds 1,2 --truth cohort --background none)
"$N" compare "${cmpopts[@]}" --out c0 >/dev/null 2>&1
"$N" compare "${cmpopts[@]}" --out c1 --shard 1/2 >/dev/null 2>&1
"$N" compare "${cmpopts[@]}" --out c1 --shard 2/2 >/dev/null 2>&1
"$N" compare --merge c1/shard-1-of-2 c1/shard-2-of-2 --out cm >/dev/null 2>cm.err || cat cm.err
no_seconds() { awk -F, -v OFS=, '{NF--; print}' "$1"; }
check "compare: --shard 1/2 + 2/2 + --merge = the unsharded table" cmp <(no_seconds c0/results.csv) <(no_seconds cm/results.csv)
cp one.safetensors other.safetensors
"$N" train --data cohort/labels.csv --arch "$arch" --voxel 6 --shape 31,37,31 --batch 5 --seed 9 --epochs 1 --quiet --out other.safetensors >/dev/null 2>&1
"$N" compare "${cmpopts[@]/one.safetensors/other.safetensors}" --out c2 --shard 2/2 >/dev/null 2>&1
if "$N" compare --merge c1/shard-1-of-2 c2/shard-2-of-2 --out cx >cx.out 2>&1; then bad "merge of two models' shards refused"
else grep -q "another model" cx.out && ok "merge of two models' shards refused" || { bad "merge refusal names the model"; cat cx.out; }; fi
"${run[@]}" -np 2 "$N" compare "${cmpopts[@]}" --out cmpi >/dev/null 2>cmpi.err || cat cmpi.err
check "compare: 2 ranks = 1 process (table)" cmp <(no_seconds c0/results.csv) <(no_seconds cmpi/results.csv)

ex=(explain --model one.safetensors --data cohort/labels.csv --split all --method saliency,gradxinput --truth cohort)
"${run[@]}" -np 1 "$N" "${ex[@]}" --out e1 >/dev/null 2>e1.err || cat e1.err
"${run[@]}" -np 2 "$N" "${ex[@]}" --out e2 >/dev/null 2>e2.err || cat e2.err
explain_same() { # every file but the pages with wall times; summary.csv but its seconds column
  local f rc=0
  for f in $(cd e1 && find . -type f ! -name index.html ! -name summary.md ! -name summary.csv | sort); do
    cmp -s "e1/$f" "e2/$f" || { echo "differs: $f"; rc=1; }
  done
  cmp <(cut -d, -f1,2,4- e1/summary.csv) <(cut -d, -f1,2,4- e2/summary.csv) || rc=1
  return $rc
}
check "explain: 2 ranks = 1 process (maps, means, subjects.csv, summary)" explain_same

SLURM_ARRAY_TASK_ID=6 SLURM_ARRAY_TASK_MIN=5 SLURM_ARRAY_TASK_MAX=6 "$N" "${vis[@]}" --out vauto --shard auto \
  >/dev/null 2>vauto.err
check "slurm: --shard auto = task 6 of 5-6 is shard 2/2" test -f vauto/shard-2-of-2.json
if "$N" "${vis[@]}" --out vnone --shard auto >/dev/null 2>vnone.err; then bad "--shard auto outside an array refused"
else grep -q SLURM_ARRAY_TASK_ID vnone.err && ok "--shard auto outside an array refused" || bad "--shard auto message"; fi

# tools/slurm/sweep-array.sbatch as Slurm would run it: two array tasks, then
# the merge job its first task submitted (sbatch here is a stand-in that
# records the --wrap command).
mkdir -p fakebin
cat >fakebin/sbatch <<'SB'
#!/bin/sh
for a in "$@"; do case $a in --wrap=*) echo "${a#--wrap=}" >>"$FAKE_SBATCH_LOG" ;; esac; done
SB
chmod +x fakebin/sbatch
for task in 1 2; do
  PATH=$work/fakebin:$PATH FAKE_SBATCH_LOG=$work/sbatch.log NEUROFV=$N SLURM_ARRAY_JOB_ID=77 SLURM_ARRAY_TASK_ID=$task \
    SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=2 bash "$T/slurm/sweep-array.sbatch" one.safetensors conv2 sweep \
    --steps 8 --background none >"sweep$task.log" 2>&1 || { bad "sweep-array task $task"; tail -n 3 "sweep$task.log"; }
done
check "slurm: sweep-array.sbatch submitted one merge job" test "$(wc -l <sbatch.log)" -eq 1
sh -c "$(cat sbatch.log)" >sweep-merge.out 2>sweep-merge.err || { bad "the merge job"; tail -n 3 sweep-merge.err; }
"${run[@]}" -np 1 "$N" visualize --model one.safetensors --target conv2:all --steps 8 --background none --out sweep1 \
  >sweep1.out 2>/dev/null
check "slurm: merged grid = one run's grid" cmp sweep1/conv2_all_grid.png sweep/conv2_all_grid.png
check "slurm: merged lines = one run's lines" cmp sweep1.out sweep-merge.out

# A corrupt volume in the second half of the first batch: rank 1 reads it.
mkdir -p broken && cp -r cohort/* broken/
victim=$(awk -F, 'NR > 1 && $3 == "train" {print $1}' broken/labels.csv | tail -n 1)
head -c 300 "cohort/$victim" >"broken/$victim"
start=$SECONDS
if timeout 120 "${run[@]}" -np 2 "$N" train --data broken/labels.csv --arch "$arch" --voxel 6 --shape 31,37,31 --batch 28 \
     --epochs 1 --quiet --out broken.safetensors >broken.out 2>&1; then bad "a corrupt volume stops the run"
else
  rc=$?
  [ $rc -ne 124 ] && grep -q "$(basename "$victim")" broken.out && grep -q "stopping every rank" broken.out &&
    ok "a corrupt volume stops both ranks with its name ($((SECONDS - start)) s)" ||
    { bad "a corrupt volume stops both ranks with its name (rc $rc)"; tail -n 8 broken.out; }
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
