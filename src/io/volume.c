/* Host volumes: allocation, copy; see include/neurofv/volume.h. */
#include "neurofv/volume.h"

#include "neurofv/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t nfv_volume_numel(const nfv_volume *v)
{
    if (!v || v->nx < 1 || v->ny < 1 || v->nz < 1) return 0;
    return (size_t)v->nx * (size_t)v->ny * (size_t)v->nz;
}

nfv_status nfv_volume_alloc(nfv_volume *v, int nx, int ny, int nz, const double affine[4][4])
{
    if (!v) return nfv_fail(NFV_ERR_INVALID_ARG, "volume alloc: NULL volume");
    memset(v, 0, sizeof *v);
    if (nx < 1 || ny < 1 || nz < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "volume alloc: invalid size %dx%dx%d", nx, ny, nz);
    size_t nxy = (size_t)nx * (size_t)ny; /* < 2^62: cannot overflow */
    if (nxy > SIZE_MAX / sizeof(float) / (size_t)nz)
        return nfv_fail(NFV_ERR_NO_MEMORY, "volume alloc: %dx%dx%d is too large", nx, ny, nz);
    size_t n = nxy * (size_t)nz;
    v->data = calloc(n, sizeof(float));
    if (!v->data)
        return nfv_fail(NFV_ERR_NO_MEMORY, "volume alloc: cannot allocate %dx%dx%d floats (%.1f MiB)", nx, ny, nz,
                        (double)nxy * nz * sizeof(float) / 1048576.0);
    v->nx = nx;
    v->ny = ny;
    v->nz = nz;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) v->affine[r][c] = affine ? affine[r][c] : (r == c ? 1.0 : 0.0);
    v->sform_code = 0;
    v->qform_code = 0;
    return NFV_OK;
}

void nfv_volume_free(nfv_volume *v)
{
    if (!v) return;
    free(v->data);
    memset(v, 0, sizeof *v);
}

nfv_status nfv_volume_clone(const nfv_volume *src, nfv_volume *dst)
{
    if (!src || !src->data || !dst) return nfv_fail(NFV_ERR_INVALID_ARG, "volume clone: empty source");
    NFV_TRY(nfv_volume_alloc(dst, src->nx, src->ny, src->nz, (const double(*)[4])src->affine));
    memcpy(dst->data, src->data, nfv_volume_numel(src) * sizeof(float));
    dst->sform_code = src->sform_code;
    dst->qform_code = src->qform_code;
    return NFV_OK;
}
