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

/* Read .nii/.nii.gz, NIfTI-1 or -2, any common datatype, scl_slope/inter
 * applied, into float32.  Affine: sform if sform_code > 0, else qform if
 * qform_code > 0, else pixdim scaling.  4-D files: the first volume, with a
 * warning on stderr.  Non-finite voxels are set to 0 and counted in
 * *nonfinite (may be NULL).  Rejects 1-D/2-D images, sizes inconsistent with
 * the file, and anything nifticlib cannot parse, with a message naming the file. */
nfv_status nfv_volume_read(const char *path, nfv_volume *out, size_t *nonfinite);
/* Write float32 .nii or .nii.gz (by extension) with v's affine as both sform
 * and qform (codes from v, default 2 = aligned when 0).  Written to a
 * temporary name then renamed: a failure never leaves a partial file. */
nfv_status nfv_volume_write(const char *path, const nfv_volume *v);

/* ---- Preprocessing (src/preprocess.c) ------------------------------------ */

/* Permute/flip axes so that i, j, k point to R, A, S as closely as the affine
 * allows (exact voxel data, no interpolation); affine updated. */
nfv_status nfv_volume_reorient_ras(const nfv_volume *in, nfv_volume *out);
/* Trilinear resampling to isotropic-or-not voxel size (mm), covering the same
 * field of view; the affine keeps world coordinates of every voxel centre. */
nfv_status nfv_volume_resample(const nfv_volume *in, const double voxel_mm[3], nfv_volume *out);
/* Centre crop / zero pad to nx, ny, nz; affine shifted so data stay in place. */
nfv_status nfv_volume_crop_pad(const nfv_volume *in, int nx, int ny, int nz, nfv_volume *out);
/* Resample onto an arbitrary target grid (shape + affine) by trilinear
 * interpolation in world space; outside the input is `fill`. */
nfv_status nfv_volume_resample_to(const nfv_volume *in, int nx, int ny, int nz, const double affine[4][4],
                                  float fill, nfv_volume *out);

typedef enum nfv_norm_method {
    NFV_NORM_NONE = 0,
    NFV_NORM_ZSCORE_NONZERO,   /* z-score over voxels != 0 (brain-extracted input) */
    NFV_NORM_ZSCORE_MASK,      /* z-score inside a given mask */
    NFV_NORM_MINMAX            /* scale to [0, 1] */
} nfv_norm_method;
/* In place.  mask (same grid, >0.5 = inside) only for NFV_NORM_ZSCORE_MASK.
 * Voxels outside the brain/mask are set to 0 for the z-score methods. */
nfv_status nfv_volume_normalize(nfv_volume *v, nfv_norm_method method, const nfv_volume *mask);
const char *nfv_norm_method_name(nfv_norm_method m);         /* "zscore-nonzero" ... */
nfv_status nfv_norm_method_parse(const char *s, nfv_norm_method *out);

/* The model grid a volume is brought to. */
typedef struct nfv_grid {
    int nx, ny, nz;
    double voxel_mm[3];
    nfv_norm_method norm;
} nfv_grid;
/* reorient_ras -> resample to voxel_mm -> crop/pad -> normalize. */
nfv_status nfv_preprocess(const nfv_volume *in, const nfv_grid *grid, nfv_volume *out);

/* ---- Datasets (src/dataset.c) -------------------------------------------- */

typedef enum nfv_split { NFV_SPLIT_TRAIN = 0, NFV_SPLIT_VAL = 1, NFV_SPLIT_TEST = 2, NFV_SPLIT_ALL = 3 } nfv_split;

typedef struct nfv_dataset_row {
    char *path;       /* resolved relative to the CSV's directory */
    char *label;      /* as written */
    int class_index;  /* index into class_names */
    nfv_split split;  /* train when the column is absent */
    int csv_line;     /* for messages */
} nfv_dataset_row;

typedef struct nfv_dataset {
    nfv_dataset_row *rows;
    int count;
    char **class_names;   /* sorted, unique */
    int class_count;
    char *csv_path;
} nfv_dataset;

/* Parse a CSV with header `path,label[,split]` (quoted fields allowed).
 * Checks every row (missing file, unknown split, empty label) and that there
 * are at least 2 classes; messages name the CSV line.  Volumes are not read. */
nfv_status nfv_dataset_load(const char *csv_path, nfv_dataset *out);
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
 * Errors (file unreadable since the CSV was loaded, ...) name the CSV line;
 * non-finite voxels are zeroed as by nfv_volume_read. */
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
