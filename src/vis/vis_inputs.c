/* The inputs of the visualization loop that come from files: the template
 * (a start, or the background of the change) and the optimization mask, both
 * brought onto the model grid (D, H, W) = input_shape[1..3] through the
 * model's affine. */
#include <stdio.h>
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

static int ascending(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* "ball=R[@X,Y,Z]": radius and centre in mm; has_centre 0 when no @. */
static nfv_status parse_ball(const char *spec, double *radius, double centre[3], int *has_centre)
{
    char tail = 0;
    int got = sscanf(spec, "ball=%lf@%lf,%lf,%lf%c", radius, &centre[0], &centre[1], &centre[2], &tail);
    *has_centre = got >= 4;
    if (!(got == 1 || got == 4) || !(*radius > 0) || *radius > 1000 ||
        (got == 1 && strchr(spec, '@')))
        return nfv_fail(NFV_ERR_INVALID_ARG, "--mask %s: expected ball=R or ball=R@X,Y,Z (radius and world "
                                             "centre in mm, R in (0, 1000])", spec);
    return NFV_OK;
}

/* Centre (world mm) of the template's white matter on the model grid: the
 * centroid of the brain voxels in the top quartile of intensity.  A
 * position inside deep white matter that needs no labels, where the
 * default ball of `--mask ball=R` goes. */
static nfv_status white_matter_centre(const nfv_model *m, double centre[3])
{
    nfv_volume t;
    NFV_TRY(nfv_vis_template_on_grid(m, NULL, NULL, &t));
    size_t n = nfv_volume_numel(&t), inside = 0;
    float *sorted = malloc(n * sizeof *sorted);
    if (!sorted) {
        nfv_volume_free(&t);
        return nfv_fail(NFV_ERR_NO_MEMORY, "mask: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        if (t.data[i] > 0) sorted[inside++] = t.data[i];
    double acc[3] = {0, 0, 0}, count = 0;
    if (inside) {
        qsort(sorted, inside, sizeof *sorted, ascending);
        float q3 = sorted[inside * 3 / 4];
        for (int k = 0; k < t.nz; k++)
            for (int j = 0; j < t.ny; j++)
                for (int i = 0; i < t.nx; i++)
                    if (t.data[((size_t)k * t.ny + j) * t.nx + i] >= q3) acc[0] += i, acc[1] += j, acc[2] += k, count++;
    }
    free(sorted);
    nfv_volume_free(&t);
    if (!count) return nfv_fail(NFV_ERR_INVALID_ARG, "--mask ball: the template has no brain voxel on the model grid");
    double v[3] = {acc[0] / count, acc[1] / count, acc[2] / count};
    for (int r = 0; r < 3; r++) centre[r] = m->affine[r][0] * v[0] + m->affine[r][1] * v[1] + m->affine[r][2] * v[2] + m->affine[r][3];
    return NFV_OK;
}

/* 1 inside the ball, in world mm through the model's affine. */
static nfv_status ball_on_grid(const nfv_model *m, const char *spec, nfv_volume *v)
{
    double radius, centre[3];
    int has_centre;
    NFV_TRY(parse_ball(spec, &radius, centre, &has_centre));
    if (!has_centre) NFV_TRY(white_matter_centre(m, centre));
    int nx = m->input_shape[3], ny = m->input_shape[2], nz = m->input_shape[1];
    NFV_TRY(nfv_volume_alloc(v, nx, ny, nz, (const double(*)[4])m->affine));
    for (int k = 0; k < nz; k++)
        for (int j = 0; j < ny; j++)
            for (int i = 0; i < nx; i++) {
                double d2 = 0;
                for (int r = 0; r < 3; r++) {
                    double w = m->affine[r][0] * i + m->affine[r][1] * j + m->affine[r][2] * k + m->affine[r][3];
                    d2 += (w - centre[r]) * (w - centre[r]);
                }
                v->data[((size_t)k * ny + j) * nx + i] = d2 <= radius * radius ? 1.0f : 0.0f;
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
    } else if (!strncmp(spec, "ball=", 5)) {
        NFV_TRY(ball_on_grid(m, spec, &v));
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
