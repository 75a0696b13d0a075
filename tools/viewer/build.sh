#!/usr/bin/env bash
# Builds the report viewer bundle into OUT (default build/viewer): NiiVue's
# classic-script (UMD) build from the pinned npm package and the page glue
# nfv-viewer.js.  `npm ci` from package-lock.json only when node_modules does
# not match it (offline once installed).  Quiet when nothing changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../build/viewer}
umd=$here/node_modules/@niivue/niivue/dist/niivue.umd.js
stamp=$here/node_modules/.package-lock.json
if [ ! -f "$umd" ] || [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
    command -v npm >/dev/null || { echo "viewer: npm not found (tools/install-deps installs it)" >&2; exit 1; }
    # puppeteer-core never downloads a browser; the test drives /usr/bin/chromium.
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error --prefer-offline >/dev/null)
fi
mkdir -p "$out"
for f in "$umd" "$here/nfv-viewer.js"; do
    cmp -s "$f" "$out/$(basename "$f")" || { cp "$f" "$out/$(basename "$f").tmp" && mv -f "$out/$(basename "$f").tmp" "$out/$(basename "$f")"; }
done
