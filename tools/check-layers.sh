#!/bin/sh
# Checks that every file in src/<layer>/ includes only headers of its own
# layer or of layers below it (docs/ARCHITECTURE.md):
#   base < runtime < io < layers < model < vis < cli
# Prints one line per violation and exits non-zero if there is any.
set -eu
cd "$(dirname "$0")/.."

rank() {
  case $1 in
    base) echo 0 ;; runtime) echo 1 ;; io) echo 2 ;; layers) echo 3 ;;
    model) echo 4 ;; vis) echo 5 ;; cli) echo 6 ;; *) echo 99 ;;
  esac
}

# The layer a header belongs to: private headers by their folder, public
# ones by this table.
header_layer() {
  case $1 in
    base/*|runtime/*|io/*|layers/*|model/*|vis/*|cli/*) echo "${1%%/*}" ;;
    neurofv/status.h) echo base ;;
    neurofv/context.h|neurofv/tensor.h) echo runtime ;;
    neurofv/volume.h|neurofv/render.h|neurofv/synth.h) echo io ;;
    neurofv/ops.h) echo layers ;;
    neurofv/model.h|neurofv/train.h|neurofv/metrics.h|neurofv/safetensors.h) echo model ;;
    neurofv/vis_ops.h|neurofv/vis.h|neurofv/compare.h) echo vis ;;
    command_list.h) echo cli ;;
    *) echo unknown ;;
  esac
}

bad=0
for f in src/*/*.c src/*/*.h include/neurofv/*.h; do
  case $f in
    include/*) layer=$(header_layer "neurofv/${f##*/}") ;;
    *) layer=$(echo "$f" | cut -d/ -f2) ;;
  esac
  own=$(rank "$layer")
  for h in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f"); do
    # Includes relative to the file's own folder stay in its layer.
    [ -e "$(dirname "$f")/$h" ] && continue
    hl=$(header_layer "$h")
    if [ "$hl" = unknown ]; then
      echo "$f: includes \"$h\", which belongs to no layer (add it to tools/check-layers.sh)"
      bad=1
    elif [ "$(rank "$hl")" -gt "$own" ]; then
      echo "$f ($layer) includes \"$h\" ($hl), a higher layer"
      bad=1
    fi
  done
done
[ $bad -eq 0 ] && echo "check-layers: every include goes to the same or a lower layer"
exit $bad
