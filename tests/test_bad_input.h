/* Shared helpers of the bad-input corpus (tests/test_bad_input*.c): files
 * written at test time under test_tmpdir()/bad_input, hand-made NIfTI-1
 * headers, one small model and dataset, and the two checks every case ends
 * with.
 *
 * A refusal is: exit status 1 or 2 (no signal, no sanitizer abort), exactly
 * one line on stderr naming what was wrong (the file, CSV line or option),
 * and nothing at the --out path afterwards (not the path itself, not a
 * temporary or side file starting with it). */
#ifndef NEUROFV_TEST_BAD_INPUT_H
#define NEUROFV_TEST_BAD_INPUT_H

#include <stddef.h>

#include <nifti1.h>

/* The corpus directory (created once). */
const char *bi_dir(void);
/* bi_dir()/name into buf; returns buf. */
char *bi_path(char *buf, size_t cap, const char *name);

/* Writes bytes / text to a file (plain stdio: these are test inputs). */
int bi_write(const char *path, const void *bytes, size_t n);
int bi_write_text(const char *path, const char *text);

/* A NIfTI-1 header for nx x ny x nz voxels of datatype: bitpix to match,
 * 1 mm voxels, vox_offset 352, sform code 1 = identity, no scaling. */
void bi_header(struct nifti_1_header *h, int nx, int ny, int nz, int datatype);
/* Writes header + 4 extension bytes + data ("*.gz": gzip'ed); keep >= 0
 * cuts the file (the uncompressed stream for .gz) to that many bytes. */
int bi_nifti(const char *path, const struct nifti_1_header *h, const void *data, size_t bytes, long keep);
/* A float32 volume (identity affine) with a bright ball in noise-free ramp. */
int bi_float_volume(const char *path, int n);

/* A file of the volume corpus (tests/test_bad_input.c), written on first use:
 * "trunc_data.nii.gz", "nan_voxels.nii", "huge.nii", ... */
const char *bi_bad_volume(const char *file);

/* The legal but unusual volumes (legal_*.nii*, see tests/test_bad_input.c). */
void bi_legal_volumes(void);

/* The fixture model's architecture (for `train --arch`). */
#define BI_ARCH "conv(2,k3,p1) relu maxpool(2) flatten linear(2)"

/* The shared fixture: a model (input 1x12x12x12, classes a, b) and a
 * dataset of 12^3 volumes (labels.csv: 4 train, 2 val, 2 test rows). */
const char *bi_model(void);
const char *bi_good_volume(void); /* a valid 12^3 float32 volume */
const char *bi_good_csv(void);

/* The checks.  The command is the binary followed by the printf-formatted
 * arguments (shell syntax).  names is a list of substrings separated by '|'
 * that the one stderr line must all contain; out (may be NULL) must not
 * exist afterwards, nor anything whose name starts with it. */
void bi_refused_at(const char *file, int line, const char *names, const char *out, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* Exit 0 and out (may be NULL) exists; stderr has at most max_lines lines. */
void bi_accepted_at(const char *file, int line, const char *out, int max_lines, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
#define BI_REFUSED(names, out, ...) bi_refused_at(__FILE__, __LINE__, names, out, __VA_ARGS__)
#define BI_ACCEPTED(out, max_lines, ...) bi_accepted_at(__FILE__, __LINE__, out, max_lines, __VA_ARGS__)

#endif
