#!/bin/sh
# make test-configs: the kernel families' tests (tools/kernel-tests.txt) on
# this machine's device once per kernel configuration the per-device table
# can pick: the CPU's (vector width 16 and 8) and the GPUs' (vector width 4
# with NVIDIA's, AMD's and Intel's work-group caps), forced through
# NEUROFV_KERNEL_CONFIG.  So every configuration a GPU would run is tested on
# PoCL.  Usage: tools/test-configs.sh [TESTBIN] [CONFIG...]
set -u
bin=${1:-build/neurofv-tests}
[ $# -gt 0 ] && shift
configs=${*:-cpu-avx512 cpu-avx2 nvidia amd intel}
families=$(grep -v '^#' "$(dirname "$0")/kernel-tests.txt")
log=$(mktemp /tmp/nfv-configs.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0
for cfg in $configs; do
  start=$(date +%s)
  NEUROFV_KERNEL_CONFIG=$cfg "$bin" $families >"$log" 2>&1
  rc=$?
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  echo "test-configs: config $cfg: ${summary:-no summary}, $(($(date +%s) - start)) s"
  if [ $rc -ne 0 ] || [ -z "$summary" ]; then
    grep -E '^(FAIL|FATAL)' "$log" | head -n 30
    status=1
  fi
done
exit $status
