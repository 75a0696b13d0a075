"""Each viewer volume (<name>_view.js, written by src/io/viewer.c) decodes,
with nibabel, to a scaled-int16 NIfTI whose values are the full-precision
NIfTI's (the run's output) within half a quantization step, on the same
affine.  usage: check_viewer_volumes.py REPORT_DIR[=SCRIPTS_DIR]...: the
scripts under SCRIPTS_DIR (default REPORT_DIR; `compare --runs` and the demo
keep them beside the runs' files, outside the report), each keyed by its path
as seen from REPORT_DIR.  Prints one line per report and exits 1 on any
mismatch."""
import base64, glob, gzip, io, os, re, sys

import nibabel as nib
import numpy as np

bad = 0
for arg in sys.argv[1:]:
    report, _, scripts = arg.partition("=")
    scripts = scripts or report
    n = 0
    js_bytes = src_bytes = 0
    for js in sorted(glob.glob(os.path.join(scripts, "**", "*_view.js"), recursive=True)):
        text = open(js).read()
        m = re.fullmatch(r'\(window\.NFV_DATA = window\.NFV_DATA \|\| \{\}\)\["([^"]+)"\] = "([A-Za-z0-9+/=]+)";\n', text)
        if not m or m.group(1) != os.path.relpath(js, report):
            print(f"FAIL {js}: not NFV_DATA[its own path] = base64")
            bad += 1
            continue
        img = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(m.group(2))))
        stem = js[: -len("_view.js")]
        src = stem + "_change.nii.gz" if os.path.exists(stem + "_change.nii.gz") else stem + ".nii.gz"
        full = nib.load(src)
        a, b = img.get_fdata(), full.get_fdata()
        slope = float(img.dataobj.slope)  # nibabel moves scl_slope from the header to the array proxy
        err = float(np.max(np.abs(a - b)))
        step_ok = img.get_data_dtype() == np.int16 and err <= slope / 2 * (1 + 1e-4)
        aff_ok = np.allclose(img.affine, full.affine, atol=1e-4)
        if not (step_ok and aff_ok and a.shape == b.shape):
            print(f"FAIL {js}: dtype {img.get_data_dtype()}, max |diff| {err:.3g} vs step {slope:.3g}, affine equal {aff_ok}")
            bad += 1
            continue
        n += 1
        js_bytes += os.path.getsize(js)
        src_bytes += os.path.getsize(src)
    if n == 0:
        print(f"FAIL {arg}: no viewer volume matches")
        bad += 1
    else:
        print(f"viewer volumes: {arg}: {n} match their full-precision NIfTI within half a step; "
              f"{js_bytes} bytes of scripts for {src_bytes} bytes of float32 .nii.gz")
sys.exit(1 if bad else 0)
