/* Files and folders: mkdir -p and atomic writes.
 *
 * Every file neurofv writes goes to a temporary name beside its final path
 * and is renamed into place only after every write, the flush and the close
 * succeeded, so a crash, a signal or a full disk never leaves a partial file
 * under the final name and a previous file stays intact until replaced. */
#ifndef NEUROFV_BASE_FS_H
#define NEUROFV_BASE_FS_H

#include <stdio.h>

#include "neurofv/status.h"

/* mkdir -p: creates path and its missing parents (mode 0755); fails when a
 * component exists and is not a directory. */
nfv_status nfv_mkdirs(const char *path);

/* The path of folder `to` relative to folder `from` ("../runs/compare";
 * "." when they are the same), both existing (resolved with realpath, so
 * symbolic links and "..": a page in `from` links to files in `to`). */
nfv_status nfv_relative_dir(const char *from, const char *to, char *out, size_t cap);

/* A file being written under a temporary name ("<path>.tmp<pid>"). */
typedef struct nfv_atomic_file {
    FILE *f;           /* write through this */
    char path[4096];   /* final name */
    char tmp[4160];    /* temporary name */
} nfv_atomic_file;

/* Opens the temporary file with fopen mode ("w" or "wb"). */
nfv_status nfv_atomic_open(nfv_atomic_file *af, const char *path, const char *mode);

/* Checks the stream for write errors, flushes, closes and renames the
 * temporary file to its final name.  On any failure the temporary file is
 * removed and the error names the file.  af->f is closed either way. */
nfv_status nfv_atomic_commit(nfv_atomic_file *af);

/* Closes and removes the temporary file (after an error while writing). */
void nfv_atomic_abort(nfv_atomic_file *af);

/* 64-bit FNV-1a of a file's bytes (base/rng.h nfv_hash64): tells whether
 * two runs read the same model file. */
nfv_status nfv_file_hash(const char *path, unsigned long long *hash);
/* Reads a whole file into *data (malloc'ed, size bytes plus a terminating
 * NUL, so text can be used as a string).  A file larger than max_bytes is
 * NFV_ERR_FORMAT and is not read; a file that cannot be opened is
 * NFV_ERR_IO with *missing (when not NULL) set to 1 if it does not exist. */
nfv_status nfv_read_file(const char *path, size_t max_bytes, char **data, size_t *size, int *missing);
/* Writes text to path atomically. */
nfv_status nfv_write_text_atomic(const char *path, const char *text);

/* For writers that open files by name themselves (nifti, stb, zlib): the
 * temporary name for path into tmp (cap bytes), and the final step that
 * renames tmp to path when status is NFV_OK and removes tmp otherwise.
 * nfv_rename_into_place returns status unchanged, or the rename failure. */
nfv_status nfv_temp_name(const char *path, char *tmp, size_t cap);
nfv_status nfv_rename_into_place(nfv_status status, const char *tmp, const char *path);

#endif
