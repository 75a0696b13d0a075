/* The NiiVue viewer in neurofv's HTML reports (src/io/viewer.c).
 *
 * A report folder gets viewer/niivue.umd.js (NiiVue's classic-script build)
 * and viewer/nfv-viewer.js (the page glue, tools/viewer/nfv-viewer.js),
 * copied from the bundle folder built by tools/viewer/build.sh (run by
 * tools/install-deps).  The bundle folder is $NEUROFV_VIEWER_DIR when set
 * (only there), else the first that holds both files of <folder of the
 * running binary>/viewer and the build folder compiled in (NFV_VIEWER_DIR,
 * the Makefile's $(CURDIR)/build/viewer).  Each
 * volume the viewer shows is a small script <name>.js that sets
 * NFV_DATA["<its path in the report>"] to a base64 scaled-int16 .nii.gz, so a
 * page opened from file:// loads it with a <script> tag (Chromium refuses
 * fetch() there).  Without the bundle, pages keep their PNGs and say so. */
#ifndef NEUROFV_VIEWER_H
#define NEUROFV_VIEWER_H

#include <stddef.h>
#include <stdio.h>

#include "neurofv/status.h"
#include "neurofv/volume.h"

/* The bundle folder into buf; 0 when none is found (buf then names the
 * compiled-in folder, for the message). */
int nfv_viewer_bundle_dir(char *buf, size_t cap);

/* Copies the bundle into <report_dir>/viewer/; *available = 0 (and nothing
 * copied) when there is no bundle. */
nfv_status nfv_viewer_install(const char *report_dir, int *available);

/* Writes v as <report_dir>/<rel> (rel ends in .js): the script that sets
 * NFV_DATA[rel] to the base64 of v as a scaled-int16 .nii.gz. */
nfv_status nfv_viewer_write_volume(const char *report_dir, const char *rel, const nfv_volume *v);

/* One item of a page's viewer: ids are HTML ids ("v3"), paths relative to the page. */
typedef struct nfv_viewer_item {
    char id[32];
    char title[256];
    char background[1024];
    char overlay[1024];
} nfv_viewer_item;

/* The viewer panel (canvas, threshold slider, crosshair position) and its
 * scripts for the items; with available == 0 one line saying the viewer is
 * not bundled and the PNGs below stand in. */
void nfv_viewer_html(FILE *f, int available, const nfv_viewer_item *items, int count);

/* Items for the volumes rels[0..n) (.nii/.nii.gz paths relative to
 * report_dir): each written as <rel without extension>_view.js, ids "v<i>",
 * titles the paths; shown over background resampled to the first volume's
 * grid (viewer/background.js), or over themselves when background is NULL. */
nfv_status nfv_viewer_write_items(const char *report_dir, const char *const *rels, int n, const nfv_volume *background,
                                  nfv_viewer_item *items);

#endif
