/* NIfTI-1/-2 reading and writing through nifticlib; see include/neurofv/volume.h.
 *
 * Reading goes in two steps so that a corrupt or hostile header can never
 * cause a huge allocation: the header alone is parsed first, its sizes are
 * checked against limits and against the file's actual byte count, and only
 * then is the first volume (brick 0) loaded and converted to float. */
#include "neurofv/volume.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti2_io.h>

#include "base/affine.h"
#include "base/fs.h"
#include "neurofv/status.h"

/* Largest volume we agree to read: 2^30 voxels (4 GiB as float). Real MRI is
 * far below (a 0.5 mm whole head is ~3.5e7 voxels). */
#define NFV_MAX_VOXELS (1LL << 30)
/* deflate cannot compress better than 1032:1, so a .gz file of S bytes holds
 * at most ~1032*S bytes: anything claiming more is truncated or lying. */
#define NFV_DEFLATE_MAX_RATIO 1032

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Convert n raw voxels of `datatype` to float with optional scaling; values are
 * computed in double so int32/int64/float64 scaling loses nothing before the
 * final rounding to float.  Non-finite results become 0 and are counted in
 * *nonfinite; *first_bad is the index of the first (n when none). */
static nfv_status convert_to_float(const void *raw, int datatype, size_t n, double slope, double inter, float *out,
                                   size_t *nonfinite, size_t *first_bad, const char *path)
{
    int scale = isfinite(slope) && slope != 0.0;
    if (!isfinite(inter)) inter = 0.0;
    size_t bad = 0, first = n;
#define NFV_CONVERT(T)                                                         \
    do {                                                                       \
        const T *p = (const T *)raw;                                           \
        for (size_t i = 0; i < n; i++) {                                       \
            double x = (double)p[i];                                           \
            if (scale) x = x * slope + inter;                                  \
            float f = (float)x;                                                \
            if (!isfinite(f)) {                                                \
                f = 0.0f;                                                      \
                if (!bad++) first = i;                                         \
            }                                                                  \
            out[i] = f;                                                        \
        }                                                                      \
    } while (0)
    switch (datatype) {
    case DT_UINT8: NFV_CONVERT(uint8_t); break;
    case DT_INT8: NFV_CONVERT(int8_t); break;
    case DT_INT16: NFV_CONVERT(int16_t); break;
    case DT_UINT16: NFV_CONVERT(uint16_t); break;
    case DT_INT32: NFV_CONVERT(int32_t); break;
    case DT_UINT32: NFV_CONVERT(uint32_t); break;
    case DT_INT64: NFV_CONVERT(int64_t); break;
    case DT_UINT64: NFV_CONVERT(uint64_t); break;
    case DT_FLOAT32: NFV_CONVERT(float); break;
    case DT_FLOAT64: NFV_CONVERT(double); break;
    default:
        return nfv_fail(NFV_ERR_UNSUPPORTED, "%s: voxel datatype %s (%d) is not supported (need an integer or real type)",
                        path, nifti_datatype_string(datatype), datatype);
    }
#undef NFV_CONVERT
    *nonfinite = bad;
    *first_bad = first;
    return NFV_OK;
}

static int supported_datatype(int datatype)
{
    switch (datatype) {
    case DT_UINT8: case DT_INT8: case DT_INT16: case DT_UINT16: case DT_INT32: case DT_UINT32:
    case DT_INT64: case DT_UINT64: case DT_FLOAT32: case DT_FLOAT64: return 1;
    default: return 0;
    }
}

/* The header as written, before nifticlib's repairs: nifticlib quietly turns
 * dimension sizes < 1 into 1 and a vox_offset inside the header (negative,
 * NaN) into the header size, so that data would be read from the wrong
 * place or with the wrong shape.  Checked here: the number of dimensions,
 * every size, the data offset and the datatype. */
static nfv_status check_raw_header(const char *path)
{
    int nver = 0;
    void *raw = nifti_read_header(path, &nver, 0);
    if (!raw || (nver != 1 && nver != 2)) {
        free(raw);
        return nfv_fail(NFV_ERR_FORMAT, "%s: not a NIfTI-1/NIfTI-2 file (no valid header)", path);
    }
    int64_t dim[8];
    double offset, xform[2][12]; /* sform rows, then qform quaternion + offsets */
    int datatype, header_bytes, single, codes[2];
    /* nifti_read_header leaves a byte-swapped header as it is in the file. */
    if (nver == 1 && ((nifti_1_header *)raw)->sizeof_hdr != 348) nifti_swap_as_nifti1(raw);
    if (nver == 2 && ((nifti_2_header *)raw)->sizeof_hdr != 540) nifti_swap_as_nifti2(raw);
    if (nver == 1) {
        const nifti_1_header *h = raw;
        for (int d = 0; d < 8; d++) dim[d] = h->dim[d];
        offset = h->vox_offset, datatype = h->datatype, header_bytes = 348;
        single = !strcmp(h->magic, "n+1");
        codes[0] = h->sform_code, codes[1] = h->qform_code;
        for (int c = 0; c < 4; c++)
            xform[0][c] = h->srow_x[c], xform[0][4 + c] = h->srow_y[c], xform[0][8 + c] = h->srow_z[c];
        const float q[12] = {h->quatern_b, h->quatern_c, h->quatern_d, h->qoffset_x, h->qoffset_y, h->qoffset_z,
                             h->pixdim[0], h->pixdim[1], h->pixdim[2], h->pixdim[3], 0, 0};
        for (int c = 0; c < 12; c++) xform[1][c] = q[c];
    } else {
        const nifti_2_header *h = raw;
        for (int d = 0; d < 8; d++) dim[d] = h->dim[d];
        offset = (double)h->vox_offset, datatype = h->datatype, header_bytes = 540;
        single = !memcmp(h->magic, "n+2", 4);
        codes[0] = h->sform_code, codes[1] = h->qform_code;
        for (int c = 0; c < 4; c++)
            xform[0][c] = h->srow_x[c], xform[0][4 + c] = h->srow_y[c], xform[0][8 + c] = h->srow_z[c];
        const double q[12] = {h->quatern_b, h->quatern_c, h->quatern_d, h->qoffset_x, h->qoffset_y, h->qoffset_z,
                              h->pixdim[0], h->pixdim[1], h->pixdim[2], h->pixdim[3], 0, 0};
        for (int c = 0; c < 12; c++) xform[1][c] = q[c];
    }
    free(raw);
    /* nifticlib drops a transform with NaN/Inf entries and falls back to
     * the next: the file would be placed somewhere it does not say. */
    for (int x = 0; x < 2; x++)
        for (int c = 0; codes[x] > 0 && c < 12; c++)
            if (!isfinite(xform[x][c]))
                return nfv_fail(NFV_ERR_FORMAT, "%s: corrupt header: the %s has a NaN or infinite entry", path,
                                x ? "qform" : "sform");
    if (dim[0] < 1 || dim[0] > 7)
        return nfv_fail(NFV_ERR_FORMAT, "%s: corrupt header: %lld dimensions (dim[0] must be 1..7)", path,
                        (long long)dim[0]);
    for (int d = 1; d <= dim[0]; d++)
        if (dim[d] < 1)
            return nfv_fail(NFV_ERR_FORMAT, "%s: corrupt header: dimension %d has size %lld", path, d,
                            (long long)dim[d]);
    if (!isfinite(offset) || offset < (single ? header_bytes : 0))
        return nfv_fail(NFV_ERR_FORMAT, "%s: corrupt header: vox_offset %g is not a data offset (at least %d)", path,
                        offset, single ? header_bytes : 0);
    if (!supported_datatype(datatype))
        return nfv_fail(NFV_ERR_UNSUPPORTED,
                        "%s: voxel datatype %s (%d) is not supported (need an integer or real type)", path,
                        nifti_datatype_string(datatype), datatype);
    return NFV_OK;
}

/* Single-file NIfTI keeps the data in the file we were given; only a
 * .hdr/.img pair needs nifticlib's image name. */
static const char *data_file_of(const nifti_image *nim, const char *path)
{
    int single = nim->nifti_type == NIFTI_FTYPE_NIFTI1_1 || nim->nifti_type == NIFTI_FTYPE_NIFTI2_1;
    return single || !nim->iname ? path : nim->iname;
}

/* Header-level checks: dimensionality, size limits, file byte count. */
static nfv_status check_header(const nifti_image *nim, const char *path, int64_t *voxels3d)
{
    if (nim->dim[0] < 3 || nim->nx < 2 || nim->ny < 2 || nim->nz < 2)
        return nfv_fail(NFV_ERR_FORMAT,
                        "%s: not a 3-D volume (dims %lldx%lldx%lld, ndim %lld); 1-D/2-D images are not supported", path,
                        (long long)nim->nx, (long long)nim->ny, (long long)nim->nz, (long long)nim->dim[0]);
    for (int d = 1; d <= nim->dim[0] && d <= 7; d++)
        if (nim->dim[d] < 1)
            return nfv_fail(NFV_ERR_FORMAT, "%s: dimension %d has size %lld", path, d, (long long)nim->dim[d]);
    if (nim->nx > INT32_MAX || nim->ny > INT32_MAX || nim->nz > INT32_MAX ||
        nim->nx * nim->ny > NFV_MAX_VOXELS || nim->nx * nim->ny * nim->nz > NFV_MAX_VOXELS)
        return nfv_fail(NFV_ERR_FORMAT, "%s: header claims %lldx%lldx%lld voxels, more than the %lld allowed", path,
                        (long long)nim->nx, (long long)nim->ny, (long long)nim->nz, (long long)NFV_MAX_VOXELS);
    if (nim->nifti_type == NIFTI_FTYPE_ASCII)
        return nfv_fail(NFV_ERR_UNSUPPORTED, "%s: ASCII NIfTI is not supported", path);
    if (nim->nbyper < 1 || nim->nbyper > 32)
        return nfv_fail(NFV_ERR_FORMAT, "%s: invalid bytes per voxel %d (datatype %d)", path, nim->nbyper,
                        nim->datatype);
    *voxels3d = nim->nx * nim->ny * nim->nz;

    /* The data of the first volume must be in the file. */
    const char *data_file = data_file_of(nim, path);
    struct stat st;
    if (stat(data_file, &st) != 0)
        return nfv_fail(NFV_ERR_IO, "%s: cannot stat data file %s: %s", path, data_file, strerror(errno));
    double need = (double)nim->iname_offset + (double)*voxels3d * nim->nbyper;
    if (nifti_is_gzfile(data_file)) {
        if (need > (double)st.st_size * NFV_DEFLATE_MAX_RATIO + 1024.0)
            return nfv_fail(NFV_ERR_FORMAT,
                            "%s: header claims %lldx%lldx%lld voxels (%.0f bytes) but the compressed file has only "
                            "%lld bytes: truncated or corrupt",
                            path, (long long)nim->nx, (long long)nim->ny, (long long)nim->nz, need,
                            (long long)st.st_size);
    } else if (need > (double)st.st_size) {
        return nfv_fail(NFV_ERR_FORMAT,
                        "%s: header claims %lldx%lldx%lld voxels of %d bytes from offset %lld (%.0f bytes) but the "
                        "file has %lld bytes: truncated or corrupt",
                        path, (long long)nim->nx, (long long)nim->ny, (long long)nim->nz, nim->nbyper,
                        (long long)nim->iname_offset, need, (long long)st.st_size);
    }
    return NFV_OK;
}

/* The voxel-to-world affine (sform, else qform, else pixdim); a singular or
 * non-finite one is an error: no world position could be computed. */
static nfv_status read_affine(const nifti_image *nim, nfv_volume *out, const char *path)
{
    const nifti_dmat44 *m = NULL;
    if (nim->sform_code > 0) m = &nim->sto_xyz;
    else if (nim->qform_code > 0) m = &nim->qto_xyz;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) out->affine[r][c] = m ? m->m[r][c] : 0.0;
    if (!m) { /* NIfTI "method 1" (ANALYZE): voxel sizes only, origin at voxel 0 */
        out->affine[0][0] = nim->dx != 0.0 ? nim->dx : 1.0;
        out->affine[1][1] = nim->dy != 0.0 ? nim->dy : 1.0;
        out->affine[2][2] = nim->dz != 0.0 ? nim->dz : 1.0;
    }
    out->affine[3][0] = out->affine[3][1] = out->affine[3][2] = 0.0;
    out->affine[3][3] = 1.0;
    out->sform_code = nim->sform_code > 0 ? nim->sform_code : 0;
    out->qform_code = nim->qform_code > 0 ? nim->qform_code : 0;
    double inv[4][4];
    if (!nfv_affine_inverse((const double(*)[4])out->affine, inv))
        return nfv_fail(NFV_ERR_FORMAT, "%s: the voxel-to-world affine (%s) is singular or not finite", path,
                        m == &nim->sto_xyz ? "sform" : m ? "qform" : "pixdim");
    return NFV_OK;
}

nfv_status nfv_volume_read(const char *path, nfv_volume *out, size_t *nonfinite)
{
    if (!path || !out) return nfv_fail(NFV_ERR_INVALID_ARG, "volume read: NULL argument");
    memset(out, 0, sizeof *out);
    if (nonfinite) *nonfinite = 0;
    struct stat st;
    if (stat(path, &st) != 0) return nfv_fail(NFV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return nfv_fail(NFV_ERR_IO, "%s: not a regular file", path);

    /* nifticlib's own diagnostics would add lines to our one message. */
    nifti_set_debug_level(0);
    NFV_TRY(check_raw_header(path));
    /* Header only (read_data = 0): nothing large is allocated yet. */
    nifti_image *nim = nifti_image_read(path, 0);
    if (!nim) return nfv_fail(NFV_ERR_FORMAT, "%s: not a readable NIfTI-1/NIfTI-2 file (nifticlib rejected the header)",
                              path);
    int64_t voxels = 0;
    nfv_status s = check_header(nim, path, &voxels);
    if (s != NFV_OK) {
        nifti_image_free(nim);
        return s;
    }
    int64_t extra = nim->nvox / voxels; /* volumes along dims 4..7 */
    if (extra > 1)
        fprintf(stderr, "warning: %s has %lld volumes (dims %lldx%lldx%lldx%lld); using the first\n", path,
                (long long)extra, (long long)nim->nx, (long long)nim->ny, (long long)nim->nz, (long long)extra);

    /* Read brick 0 ourselves (nifticlib's loader would look up the data file
     * by base name, preferring x.nii over the x.nii.gz we were given, and
     * silently zeroes NaNs and missing bytes).  For 4-D files the other
     * volumes are never decompressed. */
    size_t bytes = (size_t)voxels * (size_t)nim->nbyper;
    void *raw = malloc(bytes);
    if (!raw) {
        nifti_image_free(nim);
        return nfv_fail(NFV_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes for the voxel data", path, bytes);
    }
    const char *data_file = data_file_of(nim, path);
    znzFile fp = znzopen(data_file, "rb", nifti_is_gzfile(data_file));
    size_t got = 0;
    if (!znz_isnull(fp)) {
        if (znzseek(fp, (znz_off_t)nim->iname_offset, SEEK_SET) >= 0) got = znzread(raw, 1, bytes, fp);
        Xznzclose(&fp);
    }
    if (got != bytes) {
        free(raw);
        nifti_image_free(nim);
        return nfv_fail(NFV_ERR_FORMAT, "%s: truncated or corrupt: read %zu of %zu voxel data bytes", path, got,
                        bytes);
    }
    if (nim->byteorder != nifti_short_order() && nim->swapsize > 1)
        nifti_swap_Nbytes((int64_t)voxels * (nim->nbyper / nim->swapsize), nim->swapsize, raw);
    size_t bad = 0, first = 0;
    s = nfv_volume_alloc(out, (int)nim->nx, (int)nim->ny, (int)nim->nz, NULL);
    if (s == NFV_OK)
        s = convert_to_float(raw, nim->datatype, (size_t)voxels, nim->scl_slope, nim->scl_inter, out->data, &bad,
                             &first, path);
    if (s == NFV_OK) s = read_affine(nim, out, path);
    if (s == NFV_OK && bad && !nonfinite) {
        size_t i = first % (size_t)out->nx, j = first / (size_t)out->nx % (size_t)out->ny,
               k = first / ((size_t)out->nx * (size_t)out->ny);
        s = nfv_fail(NFV_ERR_FORMAT, "%s: %zu voxel%s NaN or Inf (the first at i,j,k = %zu,%zu,%zu); replace them, e.g. "
                     "by 0, before use", path, bad, bad == 1 ? " is" : "s are", i, j, k);
    }
    if (nonfinite) *nonfinite = bad;
    free(raw);
    nifti_image_free(nim);
    if (s != NFV_OK) nfv_volume_free(out);
    return s;
}

/* int16: voxels stored as round(v / slope) with scl_slope = max |v| / 32767. */
static nfv_status write_nifti(const char *path, const nfv_volume *v, int int16)
{
    if (!path || !v || !v->data || nfv_volume_numel(v) == 0)
        return nfv_fail(NFV_ERR_INVALID_ARG, "volume write: empty volume or NULL path");
    int gz = has_suffix(path, ".nii.gz");
    if (!gz && !has_suffix(path, ".nii"))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: output name must end in .nii or .nii.gz", path);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            if (!isfinite(v->affine[r][c]))
                return nfv_fail(NFV_ERR_INVALID_ARG, "%s: affine[%d][%d] is not finite", path, r, c);

    /* Temporary name in the same directory (rename is atomic there) that keeps
     * the extension, since nifticlib picks compression from it. */
    size_t cap = strlen(path) + 64;
    char *tmp = malloc(cap);
    if (!tmp) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
    size_t stem = strlen(path) - (gz ? 7 : 4);
    snprintf(tmp, cap, "%.*s.tmp%ld%s", (int)stem, path, (long)getpid(), gz ? ".nii.gz" : ".nii");

    /* nifticlib prints its own line when it cannot create the file: try
     * first, so that the one message is ours. */
    FILE *probe = fopen(tmp, "wb");
    if (!probe) {
        nfv_status s = nfv_fail(NFV_ERR_IO, "%s: cannot write %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return s;
    }
    fclose(probe);
    nifti_set_debug_level(0); /* failures are checked below, in one message */
    int64_t dims[8] = {3, v->nx, v->ny, v->nz, 1, 1, 1, 1};
    size_t n = nfv_volume_numel(v);
    double slope = 1.0;
    short *q = NULL;
    if (int16) {
        double big = 0;
        for (size_t i = 0; i < n; i++) big = fmax(big, fabs((double)v->data[i]));
        slope = big > 0 ? (float)(big / 32767.0) : 1.0; /* as the header stores it (float32) */
        q = malloc(n * sizeof *q);
        if (!q) {
            unlink(tmp);
            free(tmp);
            return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
        }
        for (size_t i = 0; i < n; i++) q[i] = (short)fmax(-32767.0, fmin(32767.0, rint(v->data[i] / slope)));
    }
    nifti_image *nim = nifti_make_new_nim(dims, int16 ? DT_INT16 : DT_FLOAT32, 0);
    if (!nim) {
        unlink(tmp);
        free(tmp);
        free(q);
        return nfv_fail(NFV_ERR_NO_MEMORY, "%s: nifticlib could not create an image header", path);
    }
    nifti_dmat44 a;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) a.m[r][c] = v->affine[r][c];
    a.m[3][0] = a.m[3][1] = a.m[3][2] = 0.0;
    a.m[3][3] = 1.0;
    nim->sform_code = v->sform_code > 0 ? v->sform_code : NIFTI_XFORM_ALIGNED_ANAT;
    nim->qform_code = v->qform_code > 0 ? v->qform_code : NIFTI_XFORM_ALIGNED_ANAT;
    nim->sto_xyz = a;
    nim->sto_ijk = nifti_dmat44_inverse(a);
    /* The qform is the nearest rigid+scale transform (exact unless the affine
     * shears); pixdim takes its voxel sizes, as nibabel does. */
    double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
    nifti_dmat44_to_quatern(a, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
    nim->quatern_b = qb;
    nim->quatern_c = qc;
    nim->quatern_d = qd;
    nim->qoffset_x = qx;
    nim->qoffset_y = qy;
    nim->qoffset_z = qz;
    nim->qfac = qfac;
    nim->pixdim[0] = qfac;
    nim->dx = nim->pixdim[1] = dx;
    nim->dy = nim->pixdim[2] = dy;
    nim->dz = nim->pixdim[3] = dz;
    nim->qto_xyz = nifti_quatern_to_dmat44(qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac);
    nim->qto_ijk = nifti_dmat44_inverse(nim->qto_xyz);
    nim->xyz_units = NIFTI_UNITS_MM;
    nim->scl_slope = slope;
    nim->scl_inter = 0.0;
    snprintf(nim->descrip, sizeof nim->descrip, "neurofv");
    nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
    if (nifti_set_filenames(nim, tmp, 0, 1) != 0) {
        nifti_image_free(nim);
        unlink(tmp);
        free(tmp);
        free(q);
        return nfv_fail(NFV_ERR_IO, "%s: nifticlib rejected the file name", path);
    }
    /* The header through nifticlib (write_opts 2: no data, leave the file
     * open at vox_offset), the data ourselves: nifti_image_write returns
     * nothing and prints its own lines when a write falls short, where a
     * full disk must give one message and no file. */
    size_t bytes = n * (int16 ? sizeof(short) : sizeof(float));
    znzFile fp = nifti_image_write_hdr_img(nim, 2, "wb");
    nifti_image_free(nim);
    nfv_status s = NFV_OK;
    if (znz_isnull(fp)) {
        s = nfv_fail(NFV_ERR_IO, "%s: cannot write %s: %s", path, tmp, strerror(errno));
    } else {
        size_t wrote = znzwrite(int16 ? (const void *)q : (const void *)v->data, 1, bytes, fp);
        int err = errno;
        if (znzclose(fp) != 0 && wrote == bytes) wrote = 0, err = errno;
        if (wrote != bytes)
            s = nfv_fail(NFV_ERR_IO, "%s: write failed (%s; disk full?)", path, err ? strerror(err) : "short write");
    }
    /* What landed on disk, read back: the header, and for .gz the whole
     * stream (a gzip stream cut short still has a readable header). */
    struct stat st;
    if (s == NFV_OK && stat(tmp, &st) != 0) {
        s = nfv_fail(NFV_ERR_IO, "%s: writing %s failed: %s", path, tmp, strerror(errno));
    } else if (s == NFV_OK && !gz && (size_t)st.st_size < 352 + bytes) {
        s = nfv_fail(NFV_ERR_IO, "%s: short write (%lld of %zu bytes; disk full?)", path, (long long)st.st_size,
                     352 + bytes);
    } else if (s == NFV_OK && gz) {
        nifti_image *chk = nifti_image_read(tmp, 1);
        if (!chk || !chk->data || chk->nx != v->nx || chk->ny != v->ny || chk->nz != v->nz)
            s = nfv_fail(NFV_ERR_IO, "%s: the written file does not read back (disk full?)", path);
        if (chk) nifti_image_free(chk);
    }
    free(q);
    s = nfv_rename_into_place(s, tmp, path);
    free(tmp);
    return s;
}

nfv_status nfv_volume_write(const char *path, const nfv_volume *v) { return write_nifti(path, v, 0); }

nfv_status nfv_volume_write_int16(const char *path, const nfv_volume *v) { return write_nifti(path, v, 1); }
