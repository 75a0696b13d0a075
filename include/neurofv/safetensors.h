/* The safetensors file format, read and written on the host.
 *
 *   [8 bytes: little-endian u64 header length L] [L bytes: JSON header] [data]
 *   header: {"__metadata__": {"key": "string", ...},
 *            "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
 * Offsets are relative to the first data byte; tensors are little-endian and
 * row-major.  The reader checks every dtype, shape, offset and size against
 * the file before returning, so callers may read tensor bytes directly. */
#ifndef NEUROFV_SAFETENSORS_H
#define NEUROFV_SAFETENSORS_H

#include <stddef.h>

#include "neurofv/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NFV_ST_MAX_DIMS 8

typedef enum nfv_st_dtype { NFV_ST_F32 = 0, NFV_ST_F64, NFV_ST_F16, NFV_ST_BF16, NFV_ST_I64, NFV_ST_I32,
                            NFV_ST_I16, NFV_ST_I8, NFV_ST_U8, NFV_ST_BOOL } nfv_st_dtype;
const char *nfv_st_dtype_name(nfv_st_dtype d);   /* "F32" */
size_t nfv_st_dtype_size(nfv_st_dtype d);        /* bytes per element */

typedef struct nfv_st_tensor {
    char *name;
    nfv_st_dtype dtype;
    int ndim;                        /* 0 = scalar */
    long long shape[NFV_ST_MAX_DIMS];
    size_t numel;
    const unsigned char *data;       /* inside the file buffer, numel * dtype size bytes */
} nfv_st_tensor;

typedef struct nfv_st_file {
    unsigned char *bytes;            /* the whole file */
    size_t size;
    nfv_st_tensor *tensors;
    int count;
    char **meta_keys, **meta_values; /* __metadata__ */
    int meta_count;
    char *path;
} nfv_st_file;

/* Read and validate a whole file.  Corrupt files return NFV_ERR_FORMAT with
 * a message naming the file and the fault (never read out of bounds). */
nfv_status nfv_st_read(const char *path, nfv_st_file *out);
void nfv_st_free(nfv_st_file *f);
const nfv_st_tensor *nfv_st_find(const nfv_st_file *f, const char *name);
const char *nfv_st_meta(const nfv_st_file *f, const char *key);   /* NULL if absent */
/* Copy tensor t into numel floats (F32, F64, F16, BF16, integer types converted). */
void nfv_st_to_float(const nfv_st_tensor *t, float *out);

/* Writer: collect tensors (data copied) and metadata, then write. */
typedef struct nfv_st_writer {
    struct nfv_st_wtensor { char *name; nfv_st_dtype dtype; int ndim; long long shape[NFV_ST_MAX_DIMS];
                            unsigned char *data; size_t bytes; } *tensors;
    int count, cap;
    char **meta_keys, **meta_values;
    int meta_count, meta_cap;
} nfv_st_writer;

void nfv_st_writer_init(nfv_st_writer *w);
nfv_status nfv_st_writer_add(nfv_st_writer *w, const char *name, nfv_st_dtype dtype, int ndim, const long long *shape,
                             const void *data);
nfv_status nfv_st_writer_meta(nfv_st_writer *w, const char *key, const char *value);
/* Write to path via a temporary file + rename(). */
nfv_status nfv_st_writer_write(const nfv_st_writer *w, const char *path);
void nfv_st_writer_free(nfv_st_writer *w);

#ifdef __cplusplus
}
#endif
#endif
