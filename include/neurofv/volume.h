/* Brain volumes on the host: NIfTI I/O, preprocessing to a model grid.
 *
 * Memory order is NIfTI's: i (x) fastest, then j (y), then k (z), so
 * data[(k * ny + j) * nx + i].  As a tensor this is (D, H, W) = (nz, ny, nx),
 * which is how volumes are fed to models.  affine maps voxel (i, j, k, 1) to
 * world millimetres (x, y, z, 1), as nibabel's img.affine. */
#ifndef NEUROFV_VOLUME_H
#define NEUROFV_VOLUME_H

#include <stddef.h>

#include "neurofv/status.h"

/* The default template brain: Colin27 ch2bet (MNI, 1 mm, brain-extracted T1,
 * from the Debian mricron-data package).  Cohorts are built from it, overlays
 * drawn on it, and visualization masks and starts taken from it. */
#define NFV_DEFAULT_TEMPLATE "/usr/share/mricron/templates/ch2bet.nii.gz"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nfv_volume {
    int nx, ny, nz;
    float *data;              /* nx*ny*nz floats, owned */
    double affine[4][4];      /* voxel -> world (mm) */
    int sform_code, qform_code; /* NIfTI codes kept for writing (e.g. 4 = MNI) */
} nfv_volume;

size_t nfv_volume_numel(const nfv_volume *v);
/* Allocate a zero-filled volume with the given affine (NULL: identity). */
nfv_status nfv_volume_alloc(nfv_volume *v, int nx, int ny, int nz, const double affine[4][4]);
void nfv_volume_free(nfv_volume *v);
/* Deep copy. */
nfv_status nfv_volume_clone(const nfv_volume *src, nfv_volume *dst);

/* ---- NIfTI I/O (src/nifti_io.c) ------------------------------------------ */

/* Read .nii/.nii.gz, NIfTI-1 or -2 (either byte order), any common datatype,
 * scl_slope/inter applied, into float32.  Affine: sform if sform_code > 0,
 * else qform if qform_code > 0, else pixdim scaling; a singular or
 * non-finite one is an error.  4-D files: the first volume, with a warning
 * on stderr.  Non-finite voxels (NaN/Inf, also after scaling): with
 * nonfinite == NULL the file is refused with their count and the first
 * one's voxel; otherwise they are set to 0 and counted in *nonfinite (the
 * caller accepts them).  Every command passes NULL.  Rejects 1-D/2-D images,
 * corrupt headers (dim[0] outside 1..7, a size < 1, vox_offset inside the
 * header or not finite, NaN in the transform in use), sizes inconsistent
 * with the file, and anything nifticlib cannot parse, with one message
 * naming the file.
 *
 * Details: datatypes uint8/int8/int16/uint16/int32/uint32/int64/uint64/
 * float32/float64 (complex, RGB: NFV_ERR_UNSUPPORTED); scaling is computed in
 * double, slope 0 or NaN means none (as nibabel).  With neither sform nor
 * qform the affine is diag(pixdim) with origin at voxel 0 (NIfTI method 1;
 * nibabel instead centres the grid).  The header is checked before any data
 * is allocated: at most 2^30 voxels, and the data must fit in the file (for
 * .gz, in 1032x the compressed size), so a lying header is an error, not a
 * huge allocation.  Errors: NFV_ERR_IO (cannot open), NFV_ERR_FORMAT
 * (corrupt, truncated, 2-D, non-finite voxels), one line naming the file;
 * nifticlib's own diagnostics are silenced. */
nfv_status nfv_volume_read(const char *path, nfv_volume *out, size_t *nonfinite);
/* Write float32 .nii or .nii.gz (by extension) with v's affine as both sform
 * and qform (codes from v, default 2 = aligned when 0).  Written to a
 * temporary name then renamed: a failure never leaves a partial file.
 * The file is NIfTI-1 single-file: the sform is stored as float32 (so the
 * affine reads back to float precision), the qform is the closest
 * rotation+scale (exact unless the affine shears), pixdim from the qform. */
nfv_status nfv_volume_write(const char *path, const nfv_volume *v);
/* The same as scaled int16 (scl_slope = max |v| / 32767, no intercept): half
 * the bytes, values within slope / 2 of v's.  For viewer copies
 * (src/io/viewer.c); results stay float32. */
nfv_status nfv_volume_write_int16(const char *path, const nfv_volume *v);

/* ---- Preprocessing (src/preprocess.c) ------------------------------------ */

/* Permute/flip axes so that i, j, k point to R, A, S as closely as the affine
 * allows (exact voxel data, no interpolation); affine updated. */
nfv_status nfv_volume_reorient_ras(const nfv_volume *in, nfv_volume *out);
/* Trilinear resampling to isotropic-or-not voxel size (mm), covering the same
 * field of view; the affine keeps world coordinates of every voxel centre.
 * voxel_mm[a] is the size along voxel axis a (x, y, z once RAS).  Output size
 * n' = round(n * size_in / size_out) per axis, grid centred on the input's
 * centre (1 mm 181 -> 2 mm 91 keeps voxel 0 on voxel 0, as MNI grids); the
 * same voxel size returns an exact copy.  Samples are as resample_to, fill 0. */
nfv_status nfv_volume_resample(const nfv_volume *in, const double voxel_mm[3], nfv_volume *out);
/* Centre crop / zero pad to nx, ny, nz; affine shifted so data stay in place.
 * Output voxel o is input voxel o + (n_in - n_out) / 2 (C division, toward
 * 0): an odd difference crops/pads the extra voxel at the high end, so crop
 * and pad between two sizes are exact inverses. */
nfv_status nfv_volume_crop_pad(const nfv_volume *in, int nx, int ny, int nz, nfv_volume *out);
/* Resample onto an arbitrary target grid (shape + affine) by trilinear
 * interpolation in world space; outside the input is `fill`.  "Inside" means
 * within the input's voxels, i.e. up to half a voxel beyond the outermost
 * voxel centres, where the edge value is extended.  sform/qform codes are
 * copied from in. */
nfv_status nfv_volume_resample_to(const nfv_volume *in, int nx, int ny, int nz, const double affine[4][4],
                                  float fill, nfv_volume *out);

typedef enum nfv_norm_method {
    NFV_NORM_NONE = 0,
    NFV_NORM_ZSCORE_NONZERO,   /* z-score over voxels != 0 (brain-extracted input) */
    NFV_NORM_ZSCORE_MASK,      /* z-score inside a given mask */
    NFV_NORM_MINMAX            /* scale to [0, 1] */
} nfv_norm_method;
/* In place.  mask (same grid, >0.5 = inside) only for NFV_NORM_ZSCORE_MASK.
 * Voxels outside the brain/mask are set to 0 for the z-score methods.
 * z-score uses the population standard deviation (a constant brain gives
 * 0); an empty brain/mask is NFV_ERR_INVALID_ARG.  minmax of a constant
 * volume gives 0.  Names: none, zscore-nonzero (alias zscore), zscore-mask,
 * minmax. */
nfv_status nfv_volume_normalize(nfv_volume *v, nfv_norm_method method, const nfv_volume *mask);
const char *nfv_norm_method_name(nfv_norm_method m);         /* "zscore-nonzero" ... */
nfv_status nfv_norm_method_parse(const char *s, nfv_norm_method *out);

/* The model grid a volume is brought to. */
typedef struct nfv_grid {
    int nx, ny, nz;
    double voxel_mm[3];
    nfv_norm_method norm;
} nfv_grid;
/* reorient_ras -> resample to voxel_mm -> crop/pad -> normalize.  The
 * output affine maps each voxel to the world point it was sampled at, so the
 * result written with nfv_volume_write overlays on the input.  grid->norm
 * may not be NFV_NORM_ZSCORE_MASK (no mask here): NFV_ERR_INVALID_ARG. */
nfv_status nfv_preprocess(const nfv_volume *in, const nfv_grid *grid, nfv_volume *out);

/* ---- Datasets (src/dataset.c) -------------------------------------------- */

typedef enum nfv_split { NFV_SPLIT_TRAIN = 0, NFV_SPLIT_VAL = 1, NFV_SPLIT_TEST = 2, NFV_SPLIT_ALL = 3 } nfv_split;

typedef struct nfv_dataset_row {
    char *path;       /* resolved relative to the CSV's directory */
    char *label;      /* as written */
    int class_index;  /* index into class_names; -1 for numeric labels */
    nfv_split split;  /* train when the column is absent */
    int csv_line;     /* for messages */
    double value;     /* the label as a number (nfv_dataset_load_numeric); NaN otherwise (last: positional
                       * initializers of the fields above stay valid) */
} nfv_dataset_row;

typedef struct nfv_dataset {
    nfv_dataset_row *rows;
    int count;
    char **class_names;   /* sorted, unique; none (0) for numeric labels */
    int class_count;
    char *csv_path;
} nfv_dataset;

/* Parse a CSV with header `path,label[,split]` (quoted fields allowed).
 * Checks every row (missing file, unknown split, empty label) and that there
 * are at least 2 classes; messages name the CSV line.  Volumes are not read.
 * Header names are matched case-insensitively in any order; other columns
 * are ignored.  RFC 4180 quoting ("" is a quote, fields may span lines),
 * LF or CRLF, UTF-8 BOM, blank lines skipped, spaces around unquoted fields
 * trimmed.  An empty split field means train; split values: train, val
 * (valid, validation), test.  Relative paths are resolved against the CSV's
 * directory. */
nfv_status nfv_dataset_load(const char *csv_path, nfv_dataset *out);
/* The same CSV with numeric labels (regression targets, e.g. age): every
 * row's label must be one finite number (strtod syntax: 71.5, -3, 1e2),
 * stored in row->value; no classes (class_count 0, class_index -1).  A label
 * that is not a number is NFV_ERR_FORMAT naming the CSV, its line and the
 * label. */
nfv_status nfv_dataset_load_numeric(const char *csv_path, nfv_dataset *out);
void nfv_dataset_free(nfv_dataset *ds);
const char *nfv_split_name(nfv_split s);
nfv_status nfv_split_parse(const char *s, nfv_split *out);

/* Reads and preprocesses volumes on demand with a bounded in-memory cache
 * (cap_bytes), so a 2,000-volume cohort needs no more than the cap.  The least
 * recently used volumes are evicted first; when cap_bytes is below one volume
 * only the latest is kept.  The cache copies the row paths: ds may be freed
 * before the cache.  Not thread-safe (one cache per thread). */
typedef struct nfv_volume_cache nfv_volume_cache;
nfv_status nfv_volume_cache_create(const nfv_dataset *ds, const nfv_grid *grid, size_t cap_bytes,
                                   nfv_volume_cache **out);
/* Pointer to nx*ny*nz preprocessed floats for row; valid until the next call.
 * Errors (file unreadable since the CSV was loaded, corrupt, NaN/Inf
 * voxels, ...) name the CSV line and the file. */
nfv_status nfv_volume_cache_get(nfv_volume_cache *c, int row, const float **data);
void nfv_volume_cache_free(nfv_volume_cache *c);

/* Memory and hit counters (e.g. for a progress line or a test of the cap). */
typedef struct nfv_volume_cache_stats {
    size_t bytes;      /* preprocessed data held now */
    size_t cap_bytes;
    int resident;      /* volumes held now */
    long hits, misses; /* cache_get calls served from memory / from disk */
} nfv_volume_cache_stats;
void nfv_volume_cache_get_stats(const nfv_volume_cache *c, nfv_volume_cache_stats *out);

#ifdef __cplusplus
}
#endif
#endif
