/* `neurofv viewer --report DIR --html FILE VOLUME...`: the NiiVue viewer for
 * a report page written by someone else (tools/demo.sh): copies the bundle
 * into DIR/viewer, writes each volume (a path relative to DIR) as
 * <volume>_view.js beside it, and the viewer panel's HTML to FILE, for the
 * page to include; links "#v<i>" show the i-th volume. */
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "cli.h"
#include "neurofv/viewer.h"

NFV_COMMAND(viewer, "viewer", "Write the NiiVue viewer's volumes and panel HTML for a report page")

#define MAX_VOLUMES 256

int cmd_viewer(int argc, char **argv)
{
    const char *report = NULL, *html = NULL, *background = NULL;
    const cli_option opts[] = {
        {"--report", CLI_STRING, &report, "DIR", "the page's folder; VOLUMEs are relative to it (required)"},
        {"--html", CLI_STRING, &html, "FILE", "where the panel's HTML goes (required)"},
        {"--background", CLI_STRING, &background, "FILE|template",
         "volume under the overlays (template = Colin27 ch2bet; default: each volume over itself)"},
        {0}};
    const char *pos[MAX_VOLUMES];
    int npos = 0;
    int r = cli_parse("viewer", "--report DIR --html FILE VOLUME... [options]",
                      "Copy the NiiVue bundle into DIR/viewer, write each VOLUME as a scaled-int16 script beside it and "
                      "the viewer panel (slices, 3D render, threshold slider) as HTML to FILE.  Without the bundle "
                      "(tools/install-deps builds it) FILE holds one line saying so.",
                      opts, argc, argv, pos, MAX_VOLUMES, &npos);
    if (r) return r == 1 ? 0 : 2;
    if (!report || !html || !npos) return cli_failf("viewer", "--report, --html and a VOLUME are required");
    nfv_volume bg = {0};
    nfv_viewer_item *items = calloc((size_t)npos, sizeof *items);
    if (!items) return cli_failf("viewer", "out of memory");
    int available = 0;
    nfv_status st = nfv_viewer_install(report, &available);
    if (!st && available && background)
        st = nfv_volume_read(strcmp(background, "template") ? background : NFV_DEFAULT_TEMPLATE, &bg, NULL);
    if (!st && available) st = nfv_viewer_write_items(report, pos, npos, background ? &bg : NULL, items);
    nfv_atomic_file af;
    if (!st) st = nfv_atomic_open(&af, html, "w");
    if (!st) {
        nfv_viewer_html(af.f, available, items, npos);
        st = nfv_atomic_commit(&af);
    }
    free(items);
    nfv_volume_free(&bg);
    if (st) return cli_fail("viewer", st);
    fprintf(stderr, "viewer: %s for %d volume%s in %s\n", available ? "wrote the viewer" : "no bundle: wrote the PNG note",
            npos, npos == 1 ? "" : "s", html);
    return 0;
}
