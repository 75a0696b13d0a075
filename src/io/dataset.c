/* Datasets (CSV `path,label[,split]`): classes or numeric labels; the volume
 * cache is in volume_cache.c.  See
 * include/neurofv/volume.h. */
#include "neurofv/volume.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "neurofv/status.h"

/* A dataset CSV lists files, it is never big: refuse anything over 256 MiB. */
#define NFV_CSV_MAX_BYTES (256L << 20)
/* Longest path (PATH_MAX - 1) and label a row may hold. */
#define NFV_CSV_MAX_PATH 4095
#define NFV_CSV_MAX_LABEL 255

const char *nfv_split_name(nfv_split s)
{
    switch (s) {
    case NFV_SPLIT_TRAIN: return "train";
    case NFV_SPLIT_VAL: return "val";
    case NFV_SPLIT_TEST: return "test";
    case NFV_SPLIT_ALL: return "all";
    }
    return "unknown";
}

nfv_status nfv_split_parse(const char *s, nfv_split *out)
{
    if (!s || !out) return nfv_fail(NFV_ERR_INVALID_ARG, "split: NULL argument");
    if (!strcasecmp(s, "train") || !strcasecmp(s, "training")) *out = NFV_SPLIT_TRAIN;
    else if (!strcasecmp(s, "val") || !strcasecmp(s, "valid") || !strcasecmp(s, "validation"))
        *out = NFV_SPLIT_VAL;
    else if (!strcasecmp(s, "test")) *out = NFV_SPLIT_TEST;
    else if (!strcasecmp(s, "all")) *out = NFV_SPLIT_ALL;
    else return nfv_fail(NFV_ERR_INVALID_ARG, "unknown split '%s' (expected train, val, test or all)", s);
    return NFV_OK;
}

/* ---- CSV tokenizer ----------------------------------------------------------- */

typedef struct csv_record {
    char **fields;
    int count, cap;
    int line; /* 1-based line where the record starts */
} csv_record;

typedef struct csv_reader {
    const char *p, *end;
    int line;
    const char *path;
} csv_reader;

static void record_clear(csv_record *r)
{
    for (int i = 0; i < r->count; i++) free(r->fields[i]);
    r->count = 0;
}

static void record_free(csv_record *r)
{
    record_clear(r);
    free(r->fields);
    memset(r, 0, sizeof *r);
}

static nfv_status record_push(csv_record *r, const char *text, size_t n)
{
    if (r->count == r->cap) {
        int cap = r->cap ? r->cap * 2 : 8;
        char **f = realloc(r->fields, (size_t)cap * sizeof *f);
        if (!f) return nfv_fail(NFV_ERR_NO_MEMORY, "CSV: out of memory");
        r->fields = f;
        r->cap = cap;
    }
    char *s = malloc(n + 1);
    if (!s) return nfv_fail(NFV_ERR_NO_MEMORY, "CSV: out of memory");
    memcpy(s, text, n);
    s[n] = '\0';
    r->fields[r->count++] = s;
    return NFV_OK;
}

/* Next record (RFC 4180 with tolerance: CRLF or LF, blank lines skipped,
 * spaces around unquoted fields trimmed, "" inside quotes is a quote, quoted
 * fields may span lines).  *got = 0 at end of input. */
static nfv_status csv_next(csv_reader *rd, csv_record *rec, int *got)
{
    record_clear(rec);
    *got = 0;
    /* skip blank lines */
    for (;;) {
        const char *q = rd->p;
        while (q < rd->end && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < rd->end && *q == '\n') {
            rd->p = q + 1;
            rd->line++;
            continue;
        }
        if (q >= rd->end) {
            rd->p = rd->end;
            return NFV_OK;
        }
        break;
    }
    rec->line = rd->line;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) { /* one field per iteration */
        len = 0;
        while (rd->p < rd->end && (*rd->p == ' ' || *rd->p == '\t')) rd->p++;
        int quoted = rd->p < rd->end && *rd->p == '"';
        if (quoted) {
            rd->p++;
            for (;;) {
                if (rd->p >= rd->end) {
                    free(buf);
                    return nfv_fail(NFV_ERR_FORMAT, "%s line %d: unterminated quoted field", rd->path, rec->line);
                }
                char c = *rd->p++;
                if (c == '"') {
                    if (rd->p < rd->end && *rd->p == '"') rd->p++;
                    else break;
                }
                if (c == '\n') rd->line++;
                if (len + 1 >= cap) {
                    cap = cap ? cap * 2 : 64;
                    char *nb = realloc(buf, cap);
                    if (!nb) {
                        free(buf);
                        return nfv_fail(NFV_ERR_NO_MEMORY, "CSV: out of memory");
                    }
                    buf = nb;
                }
                buf[len++] = c;
            }
            while (rd->p < rd->end && (*rd->p == ' ' || *rd->p == '\t' || *rd->p == '\r')) rd->p++;
            if (rd->p < rd->end && *rd->p != ',' && *rd->p != '\n') {
                free(buf);
                return nfv_fail(NFV_ERR_FORMAT, "%s line %d: unexpected character '%c' after a quoted field", rd->path,
                                rd->line, *rd->p);
            }
            nfv_status s = record_push(rec, buf ? buf : "", len);
            if (s != NFV_OK) {
                free(buf);
                return s;
            }
        } else {
            const char *start = rd->p;
            while (rd->p < rd->end && *rd->p != ',' && *rd->p != '\n') rd->p++;
            const char *stop = rd->p;
            while (stop > start && isspace((unsigned char)stop[-1])) stop--;
            nfv_status s = record_push(rec, start, (size_t)(stop - start));
            if (s != NFV_OK) {
                free(buf);
                return s;
            }
        }
        if (rd->p < rd->end && *rd->p == ',') {
            rd->p++;
            continue;
        }
        if (rd->p < rd->end && *rd->p == '\n') {
            rd->p++;
            rd->line++;
        }
        break;
    }
    free(buf);
    *got = 1;
    return NFV_OK;
}

/* ---- dataset --------------------------------------------------------------- */

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void nfv_dataset_free(nfv_dataset *ds)
{
    if (!ds) return;
    for (int i = 0; i < ds->count; i++) {
        free(ds->rows[i].path);
        free(ds->rows[i].label);
    }
    free(ds->rows);
    for (int i = 0; i < ds->class_count; i++) free(ds->class_names[i]);
    free(ds->class_names);
    free(ds->csv_path);
    memset(ds, 0, sizeof *ds);
}

static nfv_status read_file(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return nfv_fail(NFV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > (size_t)NFV_CSV_MAX_BYTES + 65536) {
                free(buf);
                fclose(f);
                return nfv_fail(NFV_ERR_FORMAT, "%s: larger than %ld MiB; not a dataset CSV", path,
                                NFV_CSV_MAX_BYTES >> 20);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return nfv_fail(NFV_ERR_IO, "%s: read error", path);
    }
    *text = buf;
    *len = n;
    return NFV_OK;
}

/* Resolve a CSV path relative to the CSV's directory. */
static char *resolve_path(const char *csv_path, const char *p)
{
    if (p[0] == '/') return dup_string(p);
    const char *slash = strrchr(csv_path, '/');
    size_t dir = slash ? (size_t)(slash - csv_path) + 1 : 0;
    size_t n = dir + strlen(p) + 1;
    char *out = malloc(n);
    if (!out) return NULL;
    memcpy(out, csv_path, dir);
    memcpy(out + dir, p, strlen(p) + 1);
    return out;
}

/* A CSV is text: a NUL or another control byte (tab and line ends aside)
 * means a binary file, refused before any of it is shown in a message. */
static nfv_status check_text(const char *csv_path, const char *text, size_t len)
{
    int line = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') line++;
        else if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
            return nfv_fail(NFV_ERR_FORMAT, "%s line %d: byte 0x%02x: a binary file, not a dataset CSV (UTF-16 text: save it as UTF-8)", csv_path,
                            line, c);
    }
    return NFV_OK;
}

/* A path or label of a row: not too long, no line break or tab (they would
 * break messages and output CSVs). */
static nfv_status check_field(const char *csv_path, int line, const char *what, const char *v, size_t max)
{
    size_t n = strlen(v);
    if (n > max)
        return nfv_fail(NFV_ERR_FORMAT, "%s line %d: the %s has %zu characters (at most %zu)", csv_path, line, what, n,
                        max);
    if (strpbrk(v, "\r\n\t"))
        return nfv_fail(NFV_ERR_FORMAT, "%s line %d: the %s contains a line break or tab", csv_path, line, what);
    return NFV_OK;
}

/* Up to 60 characters of a field for a message, "..." when cut. */
static const char *excerpt(const char *v, char buf[64])
{
    snprintf(buf, 64, "%.60s%s", v, strlen(v) > 60 ? "..." : "");
    for (char *q = buf; *q; q++)
        if ((unsigned char)*q < 0x20) *q = '?';
    return buf;
}

/* Classes: the sorted unique labels (at least 2); each row's class_index. */
static nfv_status build_classes(const char *csv_path, nfv_dataset *ds)
{
    char **labels = malloc((size_t)ds->count * sizeof *labels);
    if (!labels) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", csv_path);
    for (int i = 0; i < ds->count; i++) labels[i] = ds->rows[i].label;
    qsort(labels, (size_t)ds->count, sizeof *labels, cmp_str);
    int unique = 0;
    for (int i = 0; i < ds->count; i++)
        if (i == 0 || strcmp(labels[i], labels[i - 1])) labels[unique++] = labels[i];
    if (unique < 2) {
        nfv_status s = nfv_fail(NFV_ERR_FORMAT, "%s: every one of the %d rows has label '%s'; need at least 2 classes",
                                csv_path, ds->count, labels[0]);
        free(labels);
        return s;
    }
    ds->class_names = calloc((size_t)unique, sizeof *ds->class_names);
    if (!ds->class_names) {
        free(labels);
        return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", csv_path);
    }
    ds->class_count = unique;
    for (int i = 0; i < unique; i++) ds->class_names[i] = dup_string(labels[i]);
    free(labels);
    for (int i = 0; i < unique; i++)
        if (!ds->class_names[i]) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", csv_path);
    for (int r = 0; r < ds->count; r++) {
        char *key = ds->rows[r].label;
        char **hit = bsearch(&key, ds->class_names, (size_t)unique, sizeof *ds->class_names, cmp_str);
        ds->rows[r].class_index = (int)(hit - ds->class_names);
    }
    return NFV_OK;
}

/* Numeric labels (regression): each row's value, no classes.  The whole
 * label must be one finite number (strtod: 71.5, -3, 1e2; spaces around
 * an unquoted field are already trimmed). */
static nfv_status parse_values(const char *csv_path, nfv_dataset *ds)
{
    char ex[64];
    for (int r = 0; r < ds->count; r++) {
        nfv_dataset_row *row = &ds->rows[r];
        char *end;
        errno = 0;
        row->value = strtod(row->label, &end);
        if (end == row->label || *end || errno == ERANGE || !isfinite(row->value))
            return nfv_fail(NFV_ERR_FORMAT, "%s line %d: label '%s' is not a number (a regression head needs numeric labels)",
                            csv_path, row->csv_line, excerpt(row->label, ex));
    }
    return NFV_OK;
}

static nfv_status dataset_parse(const char *csv_path, const char *text, size_t len, int numeric, nfv_dataset *ds)
{
    csv_reader rd = {text, text + len, 1, csv_path};
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB && (unsigned char)text[2] == 0xBF)
        rd.p += 3; /* UTF-8 byte order mark */
    csv_record rec = {0};
    int got = 0;
    char ex[64];
    nfv_status s = check_text(csv_path, text, len);
    if (s == NFV_OK) s = csv_next(&rd, &rec, &got);
    if (s != NFV_OK) goto done;
    if (!got) {
        s = nfv_fail(NFV_ERR_FORMAT, "%s: empty file (expected a header line path,label[,split])", csv_path);
        goto done;
    }
    int col_path = -1, col_label = -1, col_split = -1;
    for (int i = 0; i < rec.count; i++) {
        if (!strcasecmp(rec.fields[i], "path")) col_path = i;
        else if (!strcasecmp(rec.fields[i], "label")) col_label = i;
        else if (!strcasecmp(rec.fields[i], "split")) col_split = i;
    }
    if (col_path < 0 || col_label < 0) {
        s = nfv_fail(NFV_ERR_FORMAT, "%s line %d: header has no '%s' column (need path,label[,split]; found '%s'%s)",
                     csv_path, rec.line, col_path < 0 ? "path" : "label", excerpt(rec.count ? rec.fields[0] : "", ex),
                     rec.count > 1 ? ",..." : "");
        goto done;
    }
    int need = col_path > col_label ? col_path : col_label;
    int cap = 0;
    for (;;) {
        s = csv_next(&rd, &rec, &got);
        if (s != NFV_OK || !got) break;
        if (rec.count <= need) {
            s = nfv_fail(NFV_ERR_FORMAT, "%s line %d: %d field%s, the header needs at least %d", csv_path, rec.line,
                         rec.count, rec.count == 1 ? "" : "s", need + 1);
            break;
        }
        const char *p = rec.fields[col_path], *label = rec.fields[col_label];
        const char *split = col_split >= 0 && col_split < rec.count ? rec.fields[col_split] : "";
        if (!p[0]) {
            s = nfv_fail(NFV_ERR_FORMAT, "%s line %d: empty path", csv_path, rec.line);
            break;
        }
        if ((s = check_field(csv_path, rec.line, "path", p, NFV_CSV_MAX_PATH)) ||
            (s = check_field(csv_path, rec.line, "label", label, NFV_CSV_MAX_LABEL)) ||
            (s = check_field(csv_path, rec.line, "split", split, NFV_CSV_MAX_LABEL)))
            break;
        if (!label[0]) {
            s = nfv_fail(NFV_ERR_FORMAT, "%s line %d: empty label for '%s'", csv_path, rec.line, p);
            break;
        }
        nfv_split sp = NFV_SPLIT_TRAIN;
        if (split[0] && (nfv_split_parse(split, &sp) != NFV_OK || sp == NFV_SPLIT_ALL)) {
            s = nfv_fail(NFV_ERR_FORMAT, "%s line %d: unknown split '%s' (expected train, val or test)", csv_path,
                         rec.line, split);
            break;
        }
        if (ds->count == cap) {
            cap = cap ? cap * 2 : 64;
            nfv_dataset_row *nr = realloc(ds->rows, (size_t)cap * sizeof *nr);
            if (!nr) {
                s = nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", csv_path);
                break;
            }
            ds->rows = nr;
        }
        nfv_dataset_row *row = &ds->rows[ds->count];
        memset(row, 0, sizeof *row);
        row->path = resolve_path(csv_path, p);
        row->label = dup_string(label);
        row->split = sp;
        row->csv_line = rec.line;
        row->class_index = -1;
        row->value = NAN;
        ds->count++;
        if (!row->path || !row->label) {
            s = nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", csv_path);
            break;
        }
        struct stat st;
        if (stat(row->path, &st) != 0 || !S_ISREG(st.st_mode)) {
            if (strcmp(row->path, p))
                s = nfv_fail(NFV_ERR_IO, "%s line %d: file not found: %s (written as '%s')", csv_path, rec.line,
                             row->path, p);
            else
                s = nfv_fail(NFV_ERR_IO, "%s line %d: file not found: %s", csv_path, rec.line, row->path);
            break;
        }
    }
    if (s != NFV_OK) goto done;
    if (ds->count == 0) {
        s = nfv_fail(NFV_ERR_FORMAT, "%s: no data rows after the header", csv_path);
        goto done;
    }
    s = numeric ? parse_values(csv_path, ds) : build_classes(csv_path, ds);
done:
    record_free(&rec);
    return s;
}

static nfv_status dataset_load(const char *csv_path, int numeric, nfv_dataset *out)
{
    if (!csv_path || !out) return nfv_fail(NFV_ERR_INVALID_ARG, "dataset: NULL argument");
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    NFV_TRY(read_file(csv_path, &text, &len));
    out->csv_path = dup_string(csv_path);
    nfv_status s = out->csv_path ? dataset_parse(csv_path, text, len, numeric, out)
                                 : nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", csv_path);
    free(text);
    if (s != NFV_OK) nfv_dataset_free(out);
    return s;
}

nfv_status nfv_dataset_load(const char *csv_path, nfv_dataset *out) { return dataset_load(csv_path, 0, out); }

nfv_status nfv_dataset_load_numeric(const char *csv_path, nfv_dataset *out) { return dataset_load(csv_path, 1, out); }
