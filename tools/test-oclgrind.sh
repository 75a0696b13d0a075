#!/bin/sh
# make test-oclgrind: every kernel family's tests at their small shapes under
# oclgrind (Debian's OpenCL device simulator, which checks every memory
# access), once per kernel configuration: the GPU profiles (vector width 4,
# the vendors' work-group caps) and the CPU's (vector width 16).  oclgrind
# presents itself as a GPU, so these are the code paths GPUs run.
#
# Plugins: --data-races (races between work-items and work-groups),
# --check-api (every OpenCL call's arguments); out-of-bounds accesses are
# always reported.  --uninitialized is left out: oclgrind 21.10 stops on
# LLVM's `freeze` instruction, which clang emits for ordinary kernels here.
#
# Passes only when every test passes and oclgrind reports nothing.
# Usage: tools/test-oclgrind.sh [TESTBIN] [CONFIG...]
set -u
bin=${1:-build/neurofv-tests}
[ $# -gt 0 ] && shift
configs=${*:-gpu amd cpu-avx512}
command -v oclgrind >/dev/null || { echo "test-oclgrind: oclgrind is not installed (tools/install-deps)"; exit 1; }

families=$(grep -v '^#' "$(dirname "$0")/kernel-tests.txt")

log=$(mktemp /tmp/nfv-oclgrind.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0
for cfg in $configs; do
  start=$(date +%s)
  NEUROFV_KERNEL_CONFIG=$cfg oclgrind --data-races --check-api --max-errors 20 "$bin" $families >"$log" 2>&1
  rc=$?
  # Each oclgrind diagnostic names the kernel ("Kernel: name") or, for API
  # errors, the call ("Function: clName").
  findings=$(grep -c -E '^[[:space:]]*(Kernel|Function): ' "$log")
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  echo "test-oclgrind: config $cfg: ${summary:-no summary}, $findings oclgrind findings, $(($(date +%s) - start)) s"
  if [ $rc -ne 0 ] || [ "$findings" -ne 0 ] || [ -z "$summary" ]; then
    grep -E -B2 -A4 '^(FAIL|[[:space:]]*(Kernel|Function): )' "$log" | head -n 60
    status=1
  fi
done
exit $status
