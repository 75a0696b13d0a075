/* safetensors reader and writer; see include/neurofv/safetensors.h. */
#include "base/fs.h"
#include "neurofv/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct { const char *name; size_t size; } DTYPES[] = {
    {"F32", 4}, {"F64", 8}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1},
};
#define NDTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

/* The header of a model is a few kB; 100 MB is far beyond any sane header and
 * keeps a corrupt length from making us allocate gigabytes. */
#define MAX_HEADER_BYTES (100u << 20)

const char *nfv_st_dtype_name(nfv_st_dtype d) { return (int)d >= 0 && (int)d < NDTYPES ? DTYPES[d].name : "?"; }
size_t nfv_st_dtype_size(nfv_st_dtype d) { return (int)d >= 0 && (int)d < NDTYPES ? DTYPES[d].size : 0; }

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void nfv_st_free(nfv_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->meta_count; i++) free(f->meta_keys[i]), free(f->meta_values[i]);
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static nfv_status bad(nfv_st_file *f, const char *path, const char *fmt, const char *a, const char *b)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    nfv_st_free(f);
    return nfv_fail(NFV_ERR_FORMAT, "%s: not a valid safetensors file: %s", path, msg);
}

static int read_whole(const char *path, unsigned char **bytes, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    if (!b) {
        fclose(fp);
        return -2;
    }
    for (;;) {
        if (n == cap) {
            unsigned char *g = realloc(b, cap * 2);
            if (!g) {
                free(b);
                fclose(fp);
                return -2;
            }
            b = g, cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(b);
        return -1;
    }
    *bytes = b, *size = n;
    return 0;
}

nfv_status nfv_st_read(const char *path, nfv_st_file *out)
{
    memset(out, 0, sizeof *out);
    int r = read_whole(path, &out->bytes, &out->size);
    if (r == -1) return nfv_fail(NFV_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    if (r == -2) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory reading the file", path);
    out->path = dupstr(path);
    if (out->size < 8) return bad(out, path, "file is %s bytes, shorter than the 8-byte header length%s", out->size ? "a few" : "0", NULL);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | out->bytes[i];
    if (hlen > out->size - 8 || hlen > MAX_HEADER_BYTES) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%llu", (unsigned long long)hlen);
        snprintf(b, sizeof b, "%zu", out->size - 8);
        return bad(out, path, "header length %s exceeds the %s bytes after it (truncated or not safetensors)", a, b);
    }
    if (hlen < 2) return bad(out, path, "header length %s is too small%s", hlen ? "1" : "0", NULL);
    const char *json = (const char *)out->bytes + 8;
    size_t data_start = 8 + (size_t)hlen, data_size = out->size - data_start;
    cJSON *root = cJSON_ParseWithLength(json, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return bad(out, path, "header is not a JSON object%s%s", NULL, NULL);
    }
    int n = cJSON_GetArraySize(root);
    out->tensors = calloc((size_t)n + 1, sizeof *out->tensors);
    out->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    out->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!out->tensors || !out->meta_keys || !out->meta_values) {
        cJSON_Delete(root);
        nfv_st_free(out);
        return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    nfv_status st = NFV_OK;
    for (cJSON *item = root->child; item; item = item->next) {
        const char *name = item->string ? item->string : "";
        if (!strcmp(name, "__metadata__")) {
            if (!cJSON_IsObject(item)) {
                cJSON_Delete(root);
                return bad(out, path, "__metadata__ is not an object%s%s", NULL, NULL);
            }
            int mn = cJSON_GetArraySize(item);
            char **k = calloc((size_t)mn + 1, sizeof(char *)), **v = calloc((size_t)mn + 1, sizeof(char *));
            if (!k || !v) {
                free(k), free(v);
                cJSON_Delete(root);
                nfv_st_free(out);
                return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
            }
            free(out->meta_keys), free(out->meta_values);
            out->meta_keys = k, out->meta_values = v;
            for (cJSON *m = item->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    char key[128];
                    snprintf(key, sizeof key, "%s", m->string ? m->string : "");
                    cJSON_Delete(root);
                    return bad(out, path, "__metadata__ value of \"%s\" is not a string%s", key, NULL);
                }
                out->meta_keys[out->meta_count] = dupstr(m->string ? m->string : "");
                out->meta_values[out->meta_count] = dupstr(m->valuestring);
                out->meta_count++;
            }
            continue;
        }
        nfv_st_tensor *t = &out->tensors[out->count];
        char nm[160];
        snprintf(nm, sizeof nm, "%s", name);
        cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
        cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
        if (!cJSON_IsObject(item) || !cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) ||
            cJSON_GetArraySize(offs) != 2) {
            cJSON_Delete(root);
            return bad(out, path, "tensor \"%s\" lacks dtype/shape/data_offsets%s", nm, NULL);
        }
        int d = -1;
        for (int i = 0; i < NDTYPES; i++)
            if (!strcmp(dtype->valuestring, DTYPES[i].name)) d = i;
        if (d < 0) {
            char dt[32];
            snprintf(dt, sizeof dt, "%s", dtype->valuestring);
            cJSON_Delete(root);
            return bad(out, path, "tensor \"%s\" has unknown dtype \"%s\"", nm, dt);
        }
        t->dtype = (nfv_st_dtype)d;
        int nd = cJSON_GetArraySize(shape);
        if (nd > NFV_ST_MAX_DIMS) {
            cJSON_Delete(root);
            return bad(out, path, "tensor \"%s\" has more than 8 dimensions%s", nm, NULL);
        }
        t->ndim = nd;
        double numel = 1;
        int i = 0;
        for (cJSON *s = shape->child; s; s = s->next, i++) {
            if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble != floor(s->valuedouble) ||
                s->valuedouble > 9.0e15) {
                cJSON_Delete(root);
                return bad(out, path, "tensor \"%s\" has a bad shape entry%s", nm, NULL);
            }
            t->shape[i] = (long long)s->valuedouble;
            numel *= s->valuedouble;
        }
        double b0 = cJSON_GetArrayItem(offs, 0)->valuedouble, b1 = cJSON_GetArrayItem(offs, 1)->valuedouble;
        if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) || b0 < 0 ||
            b1 < b0 || b0 != floor(b0) || b1 != floor(b1) || b1 > (double)data_size) {
            char a[96];
            snprintf(a, sizeof a, "[%.0f, %.0f] but the data section has %zu bytes", b0, b1, data_size);
            cJSON_Delete(root);
            return bad(out, path, "tensor \"%s\" data_offsets %s", nm, a);
        }
        if (numel * (double)DTYPES[d].size != b1 - b0) {
            char a[128];
            snprintf(a, sizeof a, "%.0f bytes for %.0f elements of %s", b1 - b0, numel, DTYPES[d].name);
            cJSON_Delete(root);
            return bad(out, path, "tensor \"%s\" size mismatch: %s", nm, a);
        }
        t->numel = (size_t)numel;
        t->data = out->bytes + data_start + (size_t)b0;
        t->name = dupstr(name);
        if (!t->name) st = nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
        out->count++;
        if (st) break;
    }
    cJSON_Delete(root);
    if (st) nfv_st_free(out);
    return st;
}

const nfv_st_tensor *nfv_st_find(const nfv_st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *nfv_st_meta(const nfv_st_file *f, const char *key)
{
    for (int i = 0; i < f->meta_count; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
    return NULL;
}

static float half_to_float(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 1024), e - 25);
    return sign ? -v : v;
}

void nfv_st_to_float(const nfv_st_tensor *t, float *out)
{
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->numel; i++) {
        /* Assemble little-endian values byte by byte: the data need not be aligned. */
        size_t sz = DTYPES[t->dtype].size;
        uint64_t u = 0;
        for (size_t b = 0; b < sz; b++) u |= (uint64_t)p[i * sz + b] << (8 * b);
        float v = 0;
        switch (t->dtype) {
        case NFV_ST_F32: {
            uint32_t w = (uint32_t)u;
            memcpy(&v, &w, 4);
            break;
        }
        case NFV_ST_F64: {
            double dv;
            memcpy(&dv, &u, 8);
            v = (float)dv;
            break;
        }
        case NFV_ST_F16: v = half_to_float((uint16_t)u); break;
        case NFV_ST_BF16: {
            uint32_t w = (uint32_t)u << 16;
            memcpy(&v, &w, 4);
            break;
        }
        case NFV_ST_I64: v = (float)(int64_t)u; break;
        case NFV_ST_I32: v = (float)(int32_t)(uint32_t)u; break;
        case NFV_ST_I16: v = (float)(int16_t)(uint16_t)u; break;
        case NFV_ST_I8: v = (float)(int8_t)(uint8_t)u; break;
        case NFV_ST_U8:
        case NFV_ST_BOOL: v = (float)u; break;
        }
        out[i] = v;
    }
}

/* ---- writer ------------------------------------------------------------- */

void nfv_st_writer_init(nfv_st_writer *w) { memset(w, 0, sizeof *w); }

void nfv_st_writer_free(nfv_st_writer *w)
{
    for (int i = 0; i < w->count; i++) free(w->tensors[i].name), free(w->tensors[i].data);
    for (int i = 0; i < w->meta_count; i++) free(w->meta_keys[i]), free(w->meta_values[i]);
    free(w->tensors), free(w->meta_keys), free(w->meta_values);
    memset(w, 0, sizeof *w);
}

nfv_status nfv_st_writer_add(nfv_st_writer *w, const char *name, nfv_st_dtype dtype, int ndim, const long long *shape,
                             const void *data)
{
    if (ndim < 0 || ndim > NFV_ST_MAX_DIMS || (int)dtype < 0 || (int)dtype >= NDTYPES)
        return nfv_fail(NFV_ERR_INVALID_ARG, "safetensors writer: tensor \"%s\": bad dtype or rank", name);
    if (w->count == w->cap) {
        int cap = w->cap ? 2 * w->cap : 32;
        void *g = realloc(w->tensors, (size_t)cap * sizeof *w->tensors);
        if (!g) return nfv_fail(NFV_ERR_NO_MEMORY, "safetensors writer: out of memory");
        w->tensors = g, w->cap = cap;
    }
    struct nfv_st_wtensor *t = &w->tensors[w->count];
    memset(t, 0, sizeof *t);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i], t->shape[i] = shape[i];
    t->ndim = ndim;
    t->dtype = dtype;
    t->bytes = numel * DTYPES[dtype].size;
    t->name = dupstr(name);
    t->data = malloc(t->bytes ? t->bytes : 1);
    if (!t->name || !t->data) {
        free(t->name), free(t->data);
        return nfv_fail(NFV_ERR_NO_MEMORY, "safetensors writer: out of memory for \"%s\"", name);
    }
    /* Stored little-endian: this host is (x86/ARM little-endian), so a plain copy. */
    memcpy(t->data, data, t->bytes);
    w->count++;
    return NFV_OK;
}

nfv_status nfv_st_writer_meta(nfv_st_writer *w, const char *key, const char *value)
{
    if (w->meta_count == w->meta_cap) {
        int cap = w->meta_cap ? 2 * w->meta_cap : 16;
        char **k = realloc(w->meta_keys, (size_t)cap * sizeof *k);
        if (!k) return nfv_fail(NFV_ERR_NO_MEMORY, "safetensors writer: out of memory");
        w->meta_keys = k;
        char **v = realloc(w->meta_values, (size_t)cap * sizeof *v);
        if (!v) return nfv_fail(NFV_ERR_NO_MEMORY, "safetensors writer: out of memory");
        w->meta_values = v, w->meta_cap = cap;
    }
    w->meta_keys[w->meta_count] = dupstr(key);
    w->meta_values[w->meta_count] = dupstr(value);
    if (!w->meta_keys[w->meta_count] || !w->meta_values[w->meta_count])
        return nfv_fail(NFV_ERR_NO_MEMORY, "safetensors writer: out of memory");
    w->meta_count++;
    return NFV_OK;
}

nfv_status nfv_st_writer_write(const nfv_st_writer *w, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
    if (w->meta_count) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->meta_count; i++) cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_values[i]);
    }
    size_t off = 0;
    for (int i = 0; i < w->count; i++) {
        const struct nfv_st_wtensor *t = &w->tensors[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(o, "dtype", DTYPES[t->dtype].name);
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + t->bytes)));
        off += t->bytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
    size_t jlen = strlen(json);
    size_t padded = (jlen + 7) / 8 * 8;   /* data starts 8-byte aligned, as the reference writer does */

    nfv_atomic_file af;
    nfv_status s = nfv_atomic_open(&af, path, "wb");
    if (s != NFV_OK) {
        free(json);
        return s;
    }
    FILE *fp = af.f;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(json, 1, jlen, fp) == jlen;
    for (size_t i = jlen; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < w->count; i++)
        ok = fwrite(w->tensors[i].data, 1, w->tensors[i].bytes, fp) == w->tensors[i].bytes;
    free(json);
    if (!ok) {
        int e = errno;
        nfv_atomic_abort(&af);
        return nfv_fail(NFV_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return nfv_atomic_commit(&af);
}
