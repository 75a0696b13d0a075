/* The inputs of the visualization loop that come from files: the template
 * (a start, or the background of the change) and the optimization mask, both
 * brought onto the model grid (D, H, W) = input_shape[1..3] through the
 * model's affine. */
#include <stdlib.h>
#include <string.h>

#include "vis/vis_internal.h"

nfv_status nfv_vis_template_on_grid(const nfv_model *m, const char *path, nfv_volume *normalized, nfv_volume *raw)
{
    if (!path || !*path || !strcmp(path, "template")) path = NFV_DEFAULT_TEMPLATE;
    nfv_volume src, grid;
    NFV_TRY(nfv_volume_read(path, &src, NULL));
    int nx = m->input_shape[3], ny = m->input_shape[2], nz = m->input_shape[1];
    nfv_status st = nfv_volume_resample_to(&src, nx, ny, nz, (const double(*)[4])m->affine, 0.0f, &grid);
    nfv_volume_free(&src);
    if (st) return nfv_fail_context(st, "template %s onto the model grid", path);
    grid.sform_code = grid.qform_code = 4;
    if (raw) {
        st = nfv_volume_clone(&grid, raw);
        if (st) {
            nfv_volume_free(&grid);
            return st;
        }
    }
    if (normalized) {
        st = nfv_volume_normalize(&grid, m->norm, NULL);
        if (st) {
            nfv_volume_free(&grid);
            if (raw) nfv_volume_free(raw);
            return nfv_fail_context(st, "template %s", path);
        }
        *normalized = grid;
    } else {
        nfv_volume_free(&grid);
    }
    return NFV_OK;
}

nfv_status vis_mask_on_grid(const nfv_model *m, const char *spec, float **out)
{
    int nx = m->input_shape[3], ny = m->input_shape[2], nz = m->input_shape[1];
    size_t n = (size_t)nx * ny * nz;
    int brain = !strcmp(spec, "brain");
    nfv_volume v;
    memset(&v, 0, sizeof v);
    if (brain) {
        NFV_TRY(nfv_vis_template_on_grid(m, NULL, NULL, &v));
    } else {
        nfv_volume f;
        NFV_TRY(nfv_volume_read(spec, &f, NULL));
        nfv_status st = nfv_volume_resample_to(&f, nx, ny, nz, (const double(*)[4])m->affine, 0.0f, &v);
        nfv_volume_free(&f);
        if (st) return nfv_fail_context(st, "mask %s onto the model grid", spec);
    }
    float *mask = malloc(n * sizeof *mask);
    if (!mask) {
        nfv_volume_free(&v);
        return nfv_fail(NFV_ERR_NO_MEMORY, "mask: out of memory");
    }
    /* The template is 0 outside the brain; a mask file was 0/1 before
     * trilinear resampling, so its edge is where it crosses 0.5. */
    float threshold = brain ? 0.0f : 0.5f;
    size_t inside = 0;
    for (size_t i = 0; i < n; i++) {
        mask[i] = v.data[i] > threshold ? 1.0f : 0.0f;
        inside += mask[i] > 0;
    }
    nfv_volume_free(&v);
    if (!inside) {
        free(mask);
        return nfv_fail(NFV_ERR_INVALID_ARG, "mask %s has no voxel inside on the model grid", spec);
    }
    *out = mask;
    return NFV_OK;
}

nfv_status vis_subject_on_grid(const nfv_model *m, const char *path, nfv_volume *out)
{
    /* The same preprocessing as training and eval (src/io/preprocess.c). */
    nfv_volume in;
    NFV_TRY(nfv_volume_read(path, &in, NULL));
    nfv_grid g = {m->input_shape[3], m->input_shape[2], m->input_shape[1],
                  {m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]}, m->norm};
    nfv_status st = nfv_preprocess(&in, &g, out);
    nfv_volume_free(&in);
    return st ? nfv_fail_context(st, "--init subject=%s", path) : NFV_OK;
}
