#!/usr/bin/env bash
# The GPU checks in one run, for a lent GPU machine where nothing can be
# installed (issue 15: "run neurofv tune and neurofv bench on it, one prepared
# script").  Everything it needs travels in one folder, PACK, made on a Debian 12
# build machine by `tools/gpu-check.sh --pack PACK MODEL`:
#   PACK/bin/      neurofv and neurofv-tests, built here
#   PACK/lib/      the shared libraries they need that a plain CUDA image lacks
#                  (ocl-icd's libOpenCL, CLBlast, nifti2/znz, cJSON, protobuf-c, giflib, FFTW)
#   PACK/data/     Colin27 (mricron-data) and ONNX's conformance tests (libonnx-testdata)
#   PACK/ref4.safetensors  a ref4 model for the 64-channel sweep
# Then, on the GPU machine, from the repository root:
#   tools/gpu-check.sh --run PACK OUTDIR [SECONDS] [DEVICE] [STEPS] [FIRST-TEST]
# runs, each step under its own time cap and all within SECONDS (default 540),
# on DEVICE (default gpu; `cpu` tries the script's steps on a CPU machine):
#   1. neurofv devices (the GPU must be found through OpenCL, else stop)
#   2. make bench's side-by-side table, PyTorch on the same GPU (--torch-device cuda)
#   3. neurofv tune, then devices and bench again with the stored tuning
#   4. the issue's sweep: ref4's 64 conv4 channels x 512 steps, timed
#   5. bench-kernels (GFLOP/s of the conv, pool and BN kernels)
#   6. the test suite on the GPU (neurofv-tests, every test from FIRST-TEST on,
#      in parallel groups)
# and writes OUTDIR/gpu.log (everything), OUTDIR/summary.md, OUTDIR/steps.tar.gz
# (each step's output) and the sweep's grid.  STEPS (default all) picks some:
# a comma list of bench,tune,sweep,kernels,tests.  Steps 3-6 run with the
# tuning step 3 stored.  NVIDIA's OpenCL driver is added through
# OCL_ICD_FILENAMES (and an ICD file) where the image has none for it.
# Used on 2026-11-30 through the workplace's device tool: PACK in .gpu/pack
# (ignored by git, carried), `--run .gpu/pack $OUT 480`.
set -u

pack_it() {
  local pack=$1 model=$2
  mkdir -p "$pack/bin" "$pack/lib" "$pack/data"
  cp build/neurofv build/neurofv-tests "$pack/bin/"
  # every non-glibc, non-libstdc++ library of the two binaries
  for so in $(ldd build/neurofv build/neurofv-tests | awk '/=> \//{print $3}' | sort -u); do
    case $(basename "$so") in
      libc.so*|libm.so*|libstdc++*|libgcc_s*|libz.so*|ld-linux*) ;;
      *) cp -L "$so" "$pack/lib/" ;;
    esac
  done
  cp /usr/share/mricron/templates/ch2bet.nii.gz "$pack/data/"
  tar -C / -cJf "$pack/data/onnx-testdata.tar.xz" usr/share/libonnx-testdata
  cp "$model" "$pack/ref4.safetensors"
  git describe --always --dirty >"$pack/commit"
  du -sh "$pack"
}

# run_tests TESTBIN [FIRST]: the suite (from test FIRST on) in nproc/2 groups
# (at most 8) run at once, each with its own kernel cache; the groups take the
# tests in turn, so the slow ones spread.  Prints each group's summary and a total.
run_tests() {
  local bin=$1 first=${2:-} groups dir=/tmp/nfv-gpu-tests
  groups=$(( $(nproc) / 2 )); [ "$groups" -gt 8 ] && groups=8; [ "$groups" -lt 1 ] && groups=1
  rm -rf "$dir"; mkdir -p "$dir"
  "$bin" --list | awk -v first="$first" -v g="$groups" -v dir="$dir" \
    'first == "" || $0 == first {on = 1} on {print > (dir "/names." (n++ % g))}'
  if ! ls "$dir"/names.* >/dev/null 2>&1; then echo "tests: no test named $first (see $bin --list)"; return 2; fi
  local pids=() i
  for ((i = 0; i < groups; i++)); do
    [ -s "$dir/names.$i" ] || continue
    XDG_CACHE_HOME=$dir/cache.$i "$bin" $(cat "$dir/names.$i") >"$dir/out.$i" 2>&1 &
    pids+=($!)
  done
  local rc=0
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  local p=0 f=0 line
  for ((i = 0; i < groups; i++)); do
    [ -f "$dir/out.$i" ] || continue
    cat "$dir/out.$i"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$dir/out.$i" | tail -n 1)
    echo "group $i ($(wc -l <"$dir/names.$i") tests): ${line:-no summary (stopped?)}"
    p=$((p + ${line%% passed*})); f=$((f + $(echo "$line" | sed -E 's/.* ([0-9]+) failed/\1/;t;s/.*/0/')))
  done
  echo "tests: $p passed, $f failed (checks, all groups)"
  return $rc
}

run_it() {
  local pack out budget dev torchdev=cpu
  pack=$(cd "$1" && pwd) out=$2 budget=${3:-540} dev=${4:-gpu}
  local only=${5:-all} from=${6:-}
  want() { [ "$only" = all ] || [[ ",$only," == *",$1,"* ]]; }
  [ "$dev" = gpu ] && torchdev=cuda
  mkdir -p "$out"
  local log=$out/gpu.log sum=$out/summary.md
  local start=$SECONDS
  : >"$log"; : >"$sum"
  note() { echo "$*" | tee -a "$sum" >>"$log"; }
  # step NAME CAP CMD...: runs CMD under min(CAP, time left - 5 s); its output
  # goes to gpu.log and to $last (a file of its own, for the summary)
  local steps=/tmp/nfv-gpu-steps last n=0
  rm -rf "$steps"; mkdir -p "$steps"
  step() {
    local name=$1 cap=$2; shift 2
    local left=$((budget - (SECONDS - start) - 5))
    n=$((n + 1)); last=$steps/$n.txt; : >"$last"
    [ "$cap" -gt "$left" ] && cap=$left
    if [ "$cap" -lt 10 ]; then note "- $name: not run (time budget spent)"; return 124; fi
    local t0=$SECONDS
    # its own process group, so that the cap also stops what it started
    setsid "$@" >"$last" 2>&1 &
    local pid=$!
    ( sleep "$cap"; kill -TERM -- "-$pid"; sleep 5; kill -KILL -- "-$pid" ) 2>/dev/null &
    local dog=$!
    wait "$pid"
    local rc=$?
    kill "$dog" 2>/dev/null
    { echo "=== $name (cap ${cap}s): $*"; cat "$last"; } >>"$log"
    note "- $name: exit $rc, $((SECONDS - t0)) s"
    return $rc
  }

  export LD_LIBRARY_PATH="$pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export XDG_CACHE_HOME=/tmp/nfv-gpu-cache NEUROFV_BIN="$pack/bin/neurofv" PYTHONUNBUFFERED=1
  local nfv=$pack/bin/neurofv
  # NVIDIA's OpenCL driver, added to whatever ICD files exist (a CUDA image
  # may carry PoCL's only)
  local icd
  icd=$(find /usr/local/nvidia /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/cuda* -maxdepth 4 \
        -name 'libnvidia-opencl.so*' 2>/dev/null | head -n 1)
  if [ -n "$icd" ]; then
    export OCL_ICD_FILENAMES=$icd
    # the loader also reads ICD files; root on the lent machine may write one
    mkdir -p /etc/OpenCL/vendors 2>/dev/null && echo "$icd" >/etc/OpenCL/vendors/nfv-nvidia.icd 2>/dev/null
    ldd "$icd" 2>&1 | grep -i 'not found' >>"$log"
  fi
  note "NVIDIA OpenCL driver: ${icd:-none found}; ICD files: $(ls /etc/OpenCL/vendors 2>/dev/null | xargs)"
  # test data where the tests look for it (root on the lent machine)
  mkdir -p /usr/share/mricron/templates 2>/dev/null &&
    cp -n "$pack/data/ch2bet.nii.gz" /usr/share/mricron/templates/ 2>/dev/null
  [ -d /usr/share/libonnx-testdata ] || tar -C / -xJf "$pack/data/onnx-testdata.tar.xz" 2>/dev/null

  note "# neurofv GPU checks, $(date -u '+%Y-%m-%d %H:%M') UTC, commit $(cat "$pack/commit" 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader \
    2>/dev/null | sed 's/^/GPU: /' | tee -a "$sum" >>"$log"
  note "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"

  step devices 30 "$nfv" devices
  cat "$last" >>"$sum"
  if [ "$dev" = gpu ] && ! "$nfv" devices 2>/dev/null | grep -qE '^[* ] [0-9]+:[0-9]+ +GPU'; then
    note "no OpenCL GPU device: stopping.  The ICD loader's trace:"
    OCL_ICD_DEBUG=15 "$nfv" devices 2>&1 | head -n 40 >>"$sum"
    command -v clinfo >/dev/null && clinfo -l >>"$sum" 2>&1
    note "Driver files seen:"
    ls /usr/local/nvidia/lib64 /usr/local/nvidia/lib 2>&1 | grep -iv 'gl\|egl\|vulkan' | head -n 60 >>"$sum"
    return 3
  fi

  if want bench; then
  step "bench side by side (neurofv on the GPU vs PyTorch CUDA)" 170 \
    python3 tools/bench_side_by_side.py --neurofv "$nfv" --reps 9 --torch-reps 9 \
      --torch-device "$torchdev" --threads "$(nproc)" -- --device "$dev"
  sed -n '/^# make bench/,$p' "$last" >>"$sum"
  fi

  if want tune; then
  step tune 120 "$nfv" tune --device "$dev"
  tail -n 30 "$last" >>"$sum"
  step "devices after tune" 20 "$nfv" devices
  cat "$last" >>"$sum"
  step "bench with the tuning" 60 "$nfv" bench --device "$dev" --no-cold --only vis,train,eval --reps 9
  cat "$last" >>"$sum"
  fi

  if want sweep; then
  step "sweep: conv4:all x 512 steps" 90 "$nfv" visualize --device "$dev" --model "$pack/ref4.safetensors" \
    --target conv4:all --steps 512 --out /tmp/nfv-sweep --background none
  grep -E '^visualize: ' "$last" >>"$sum"
  cp /tmp/nfv-sweep/*_grid.png "$out/" 2>/dev/null
  fi

  if want kernels; then
  step bench-kernels 45 "$nfv" bench-kernels --device "$dev" --batch 1,4 --reps 15
  cat "$last" >>"$sum"
  fi

  if want tests; then
    step "tests (neurofv-tests${from:+ from $from}, in parallel groups)" 400 \
      bash "$0" --tests "$pack/bin/neurofv-tests" "$from"
    grep -E '^(tests:|group)' "$last" >>"$sum"
    grep -E '^FAIL ' "$last" | head -n 40 >>"$sum"
  fi
  tar -C "$steps" -czf "$out/steps.tar.gz" .
  note "total $((SECONDS - start)) s"
  cat "$sum"
}

case ${1:-} in
  --pack) pack_it "$2" "$3" ;;
  --tests) run_tests "$2" "${3:-}" ;;
  --run) run_it "$2" "$3" "${4:-540}" "${5:-gpu}" "${6:-all}" "${7:-}" ;;
  *) sed -n '2,23p' "$0"; exit 2 ;;
esac
