/* Model files: every parameter and BatchNorm buffer as a tensor named as in
 * PyTorch's state_dict ("i.weight", "i.running_mean", ...) plus metadata
 * (format, arch, input_shape, voxel_mm, affine, norm, head, classes and, for
 * regression heads, target_mean and target_sd) in a safetensors file.  See include/neurofv/model.h. */
#include "base/affine.h"
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_FORMAT "neurofv-model-1"
#define SPECTRUM_TENSOR "maco.amplitude"

static nfv_status download_param(nfv_context *ctx, const nfv_tensor *t, float **host)
{
    *host = malloc(t->numel * sizeof(float));
    if (!*host) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    nfv_status s = nfv_tensor_download(ctx, t, *host);
    if (s) {
        free(*host);
        *host = NULL;
    }
    return s;
}

static nfv_status add_tensor(nfv_context *ctx, nfv_st_writer *w, const char *name, const nfv_tensor *t)
{
    float *h;
    NFV_TRY(download_param(ctx, t, &h));
    long long sh[NFV_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) sh[i] = t->shape[i];
    nfv_status s = nfv_st_writer_add(w, name, NFV_ST_F32, t->ndim, sh, h);
    free(h);
    return s;
}

/* Shape of tensor t of layer l in the file (parameters, BN running
 * statistics, a constant's value); returns its ndim. */
static int tensor_shape(const nfv_layer *l, int t, int sh[5])
{
    if (l->spec.kind == NFV_LAYER_CONSTANT) {
        sh[0] = l->spec.features > 0 ? l->spec.features : 1;
        memcpy(sh + 1, l->out_shape, (size_t)l->out_ndim * sizeof(int));
        return 1 + l->out_ndim;
    }
    if (t < l->nparams) return nfv_model_param_shape(l, t, sh);
    sh[0] = l->in_shape[0]; /* BN running mean / var */
    return 1;
}

/* The name of a BatchNorm's num_batches_tracked next to its running mean
 * ("bn1.running_mean" -> "bn1.num_batches_tracked"); 0 if it has none. */
static int batches_tracked_name(const nfv_layer *l, char *buf, size_t cap)
{
    char mean[NFV_PARAM_NAME_MAX];
    nfv_layer_tensor_name(l, 2, mean, sizeof mean);
    size_t n = strlen(mean), suffix = strlen("running_mean");
    if (n < suffix || strcmp(mean + n - suffix, "running_mean")) return 0;
    snprintf(buf, cap, "%.*snum_batches_tracked", (int)(n - suffix), mean);
    return 1;
}

/* The MACO spectrum (model.h): tensor SPECTRUM_TENSOR and its range. */
static nfv_status write_spectrum(const nfv_model *m, nfv_st_writer *w)
{
    if (!m->spectrum) return NFV_OK;
    char buf[96];
    long long sh[3] = {m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    NFV_TRY(nfv_st_writer_add(w, SPECTRUM_TENSOR, NFV_ST_F32, 3, sh, m->spectrum));
    snprintf(buf, sizeof buf, "%.9g,%.9g", (double)m->spectrum_lo, (double)m->spectrum_hi);
    NFV_TRY(nfv_st_writer_meta(w, "maco_range", buf));
    snprintf(buf, sizeof buf, "%d", m->spectrum_subjects);
    return nfv_st_writer_meta(w, "maco_subjects", buf);
}

nfv_status nfv_model_to_writer(const nfv_model *m, nfv_st_writer *w)
{
    nfv_context *ctx = m->ctx;
    char name[NFV_PARAM_NAME_MAX + 32], buf[1024];
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        int nt = nfv_spec_tensor_count(&l->spec);
        for (int t = 0; t < nt; t++) {
            nfv_layer_tensor_name(l, t, name, sizeof name);
            NFV_TRY(add_tensor(ctx, w, name, nfv_layer_tensor(l, t)));
        }
        if (l->spec.kind == NFV_LAYER_BATCHNORM3D && batches_tracked_name(l, name, sizeof name)) {
            long long nbt = l->num_batches_tracked;
            NFV_TRY(nfv_st_writer_add(w, name, NFV_ST_I64, 0, NULL, &nbt));
        }
    }
    NFV_TRY(nfv_st_writer_meta(w, "format", MODEL_FORMAT));
    NFV_TRY(nfv_st_writer_meta(w, "arch", m->arch_spec));
    snprintf(buf, sizeof buf, "%d,%d,%d,%d", m->input_shape[0], m->input_shape[1], m->input_shape[2], m->input_shape[3]);
    NFV_TRY(nfv_st_writer_meta(w, "input_shape", buf));
    snprintf(buf, sizeof buf, "%.17g,%.17g,%.17g", m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]);
    NFV_TRY(nfv_st_writer_meta(w, "voxel_mm", buf));
    size_t used = 0;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%.17g", r || c ? "," : "", m->affine[r][c]);
    NFV_TRY(nfv_st_writer_meta(w, "affine", buf));
    NFV_TRY(nfv_st_writer_meta(w, "norm", nfv_norm_method_name(m->norm)));
    NFV_TRY(nfv_st_writer_meta(w, "head", nfv_head_name(m->head)));
    if (m->head == NFV_HEAD_REGRESSION) {
        snprintf(buf, sizeof buf, "%.17g", m->target_mean);
        NFV_TRY(nfv_st_writer_meta(w, "target_mean", buf));
        snprintf(buf, sizeof buf, "%.17g", m->target_sd);
        NFV_TRY(nfv_st_writer_meta(w, "target_sd", buf));
    }
    NFV_TRY(write_spectrum(m, w));
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < m->class_count; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(m->class_names[i]));
    char *js = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    if (!js) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    nfv_status s = nfv_st_writer_meta(w, "classes", js);
    free(js);
    return s;
}

nfv_status nfv_model_save(const nfv_model *m, const char *path)
{
    nfv_st_writer w;
    nfv_st_writer_init(&w);
    nfv_status s = nfv_model_to_writer(m, &w);
    if (!s) s = nfv_st_writer_write(&w, path);
    nfv_st_writer_free(&w);
    if (s) return nfv_fail_context(s, "saving model %s", path);
    return NFV_OK;
}

static int parse_numbers(const char *s, double *v, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        v[i] = strtod(s, &end);
        if (end == s || !isfinite(v[i])) return 0;
        s = end;
        while (*s == ' ') s++;
        if (i < n - 1) {
            if (*s != ',') return 0;
            s++;
        }
    }
    while (*s == ' ') s++;
    return *s == 0;
}

static nfv_status load_tensor(nfv_context *ctx, const nfv_st_file *f, const char *name, nfv_tensor *t)
{
    const nfv_st_tensor *st = nfv_st_find(f, name);
    char want[64];
    nfv_shape_str(t, want, sizeof want);
    if (!st) return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" (%s) is missing", f->path, name, want);
    int same = st->ndim == t->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = st->shape[i] == t->shape[i];
    if (!same) {
        char got[160] = "";
        size_t u = 0;
        for (int i = 0; i < st->ndim && u < sizeof got; i++)
            u += (size_t)snprintf(got + u, sizeof got - u, i ? "x%lld" : "%lld", st->shape[i]);
        return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" has shape [%s] but the architecture needs %s", f->path, name,
                        st->ndim ? got : "scalar", want);
    }
    if (st->dtype != NFV_ST_F32 && st->dtype != NFV_ST_F64 && st->dtype != NFV_ST_F16 && st->dtype != NFV_ST_BF16)
        return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" is %s, a floating-point type is needed", f->path, name,
                        nfv_st_dtype_name(st->dtype));
    float *h = malloc(st->numel * sizeof *h + 1);
    if (!h) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", f->path);
    nfv_st_to_float(st, h);
    size_t bad = 0;
    for (size_t i = 0; i < st->numel; i++) bad += !isfinite(h[i]);
    nfv_status s = bad ? nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" has %zu NaN or Inf value%s", f->path, name, bad,
                                  bad == 1 ? "" : "s")
                       : nfv_tensor_upload(ctx, t, h);
    free(h);
    return s;
}

/* input_shape metadata: "C,D,H,W", positive integers. */
static nfv_status read_input_shape(const nfv_st_file *f, const char *ishape, int shape[4])
{
    double d[4];
    if (!parse_numbers(ishape, d, 4))
        return nfv_fail(NFV_ERR_FORMAT, "%s: input_shape \"%s\" is not C,D,H,W", f->path, ishape);
    for (int i = 0; i < 4; i++) {
        if (d[i] < 1 || d[i] > 1e6 || d[i] != floor(d[i]))
            return nfv_fail(NFV_ERR_FORMAT, "%s: input_shape \"%s\" is not C,D,H,W", f->path, ishape);
        shape[i] = (int)d[i];
    }
    return NFV_OK;
}

/* classes metadata: a JSON list of strings, one per class of m's head
 * (absent: "0", "1", ...). */
static nfv_status read_classes(nfv_model *m, const nfv_st_file *f)
{
    int feats = nfv_model_outputs(m);
    const char *cs = nfv_st_meta(f, "classes");
    cJSON *arr = cs ? cJSON_Parse(cs) : NULL;
    int nclass = m->head == NFV_HEAD_SOFTMAX ? feats : m->head == NFV_HEAD_BINARY ? 2 : 0;
    const char **names = calloc((size_t)nclass + 1, sizeof(char *));
    nfv_status s = NFV_OK;
    if (!names) s = nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
    else if (cs && (!arr || !cJSON_IsArray(arr)))
        s = nfv_fail(NFV_ERR_FORMAT, "%s: \"classes\" is not a JSON list", f->path);
    else if (arr && cJSON_GetArraySize(arr) != nclass)
        s = nfv_fail(NFV_ERR_FORMAT, "%s: %d class names for a %s head with %d outputs", f->path,
                     cJSON_GetArraySize(arr), nfv_head_name(m->head), feats);
    for (int i = 0; !s && arr && i < nclass; i++) {
        cJSON *c = cJSON_GetArrayItem(arr, i);
        if (!cJSON_IsString(c)) s = nfv_fail(NFV_ERR_FORMAT, "%s: class name %d is not a string", f->path, i);
        else names[i] = c->valuestring;
        /* Names are matched against dataset labels and printed: each must be
         * one, unique, printable. */
        if (!s && (!names[i][0] || strlen(names[i]) > 255))
            s = nfv_fail(NFV_ERR_FORMAT, "%s: class name %d is empty or longer than 255 characters", f->path, i);
        for (const char *q = names[i]; !s && q && *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f)
                s = nfv_fail(NFV_ERR_FORMAT, "%s: class name %d contains a control character", f->path, i);
        for (int j = 0; !s && j < i; j++)
            if (!strcmp(names[i], names[j]))
                s = nfv_fail(NFV_ERR_FORMAT, "%s: class name \"%s\" is given twice", f->path, names[i]);
    }
    if (!s) s = nfv_model_set_classes(m, nclass, names);
    free(names);
    cJSON_Delete(arr);
    return s;
}

/* voxel_mm, affine and norm metadata, each optional (voxel_mm without an
 * affine gives the default grid at that voxel size). */
static nfv_status read_geometry(nfv_model *m, const nfv_st_file *f)
{
    const char *vs = nfv_st_meta(f, "voxel_mm"), *as = nfv_st_meta(f, "affine"), *ns = nfv_st_meta(f, "norm");
    if (vs) {
        if (!parse_numbers(vs, m->voxel_mm, 3) || m->voxel_mm[0] <= 0 || m->voxel_mm[1] <= 0 || m->voxel_mm[2] <= 0)
            return nfv_fail(NFV_ERR_FORMAT, "%s: voxel_mm \"%s\" is not three positive numbers", f->path, vs);
        nfv_model_default_affine(m);
    }
    if (as) {
        double d[16], inv[4][4];
        if (!parse_numbers(as, d, 16)) return nfv_fail(NFV_ERR_FORMAT, "%s: affine is not 16 numbers", f->path);
        for (int i = 0; i < 16; i++) m->affine[i / 4][i % 4] = d[i];
        if (!nfv_affine_inverse((const double(*)[4])m->affine, inv))
            return nfv_fail(NFV_ERR_FORMAT, "%s: the affine of the model grid is singular", f->path);
    }
    if (ns && nfv_norm_method_parse(ns, &m->norm)) return nfv_fail_context(NFV_ERR_FORMAT, "%s", f->path);
    return NFV_OK;
}

/* target_mean and target_sd metadata of a regression head (absent: 0 and 1,
 * the raw output is the prediction); the SD must be > 0. */
static nfv_status read_target_scale(nfv_model *m, const nfv_st_file *f)
{
    const char *ms = nfv_st_meta(f, "target_mean"), *ss = nfv_st_meta(f, "target_sd");
    m->target_mean = 0, m->target_sd = 1;
    if (ms && !parse_numbers(ms, &m->target_mean, 1))
        return nfv_fail(NFV_ERR_FORMAT, "%s: target_mean \"%.60s\" is not a finite number", f->path, ms);
    if (ss && (!parse_numbers(ss, &m->target_sd, 1) || !(m->target_sd > 0)))
        return nfv_fail(NFV_ERR_FORMAT, "%s: target_sd \"%.60s\" is not a number > 0", f->path, ss);
    return NFV_OK;
}

/* The optional MACO spectrum: tensor (D, H, W) of finite values >= 0 and
 * "maco_range" lo < hi; a file with one but not the other is refused. */
static nfv_status read_spectrum(nfv_model *m, const nfv_st_file *f)
{
    const nfv_st_tensor *t = nfv_st_find(f, SPECTRUM_TENSOR);
    const char *rs = nfv_st_meta(f, "maco_range"), *ns = nfv_st_meta(f, "maco_subjects");
    if (!t && !rs) return NFV_OK;
    double r[2], n = 0;
    if (!t || !rs || !parse_numbers(rs, r, 2) || !(r[0] < r[1]))
        return nfv_fail(NFV_ERR_FORMAT, "%s: the MACO spectrum needs tensor \"%s\" and maco_range \"lo,hi\" with lo < hi "
                        "(rewrite it with neurofv spectrum)", f->path, SPECTRUM_TENSOR);
    if (ns && !parse_numbers(ns, &n, 1)) n = 0;
    if (t->ndim != 3 || t->shape[0] != m->input_shape[1] || t->shape[1] != m->input_shape[2] ||
        t->shape[2] != m->input_shape[3] || (t->dtype != NFV_ST_F32 && t->dtype != NFV_ST_F64))
        return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" must be F32 (%d, %d, %d), the model grid", f->path,
                        SPECTRUM_TENSOR, m->input_shape[1], m->input_shape[2], m->input_shape[3]);
    m->spectrum = malloc(t->numel * sizeof *m->spectrum);
    if (!m->spectrum) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", f->path);
    nfv_st_to_float(t, m->spectrum);
    for (size_t i = 0; i < t->numel; i++)
        if (!isfinite(m->spectrum[i]) || m->spectrum[i] < 0)
            return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" has a negative, NaN or Inf value", f->path,
                            SPECTRUM_TENSOR);
    m->spectrum_lo = (float)r[0];
    m->spectrum_hi = (float)r[1];
    m->spectrum_subjects = (int)n;
    return NFV_OK;
}

/* Every parameter tensor is present with the architecture's shape.  Checked
 * before any allocation, so a corrupt header cannot make us allocate what the
 * file does not hold. */
static nfv_status check_param_shapes(const nfv_model *m, const nfv_st_file *f)
{
    char name[NFV_PARAM_NAME_MAX];
    for (int i = 0; i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        int nt = nfv_spec_tensor_count(&l->spec);
        for (int p = 0; p < nt; p++) {
            int sh[5];
            int nd = tensor_shape(l, p, sh);
            nfv_layer_tensor_name(l, p, name, sizeof name);
            const nfv_st_tensor *t = nfv_st_find(f, name);
            if (!t) return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" (layer %s) is missing", f->path, name, l->name);
            int same = t->ndim == nd;
            for (int d = 0; same && d < nd; d++) same = t->shape[d] == sh[d];
            if (same) continue;
            char got[160] = "", want[96] = "";
            size_t u = 0, v = 0;
            for (int d = 0; d < t->ndim && u < sizeof got; d++)
                u += (size_t)snprintf(got + u, sizeof got - u, d ? "x%lld" : "%lld", t->shape[d]);
            for (int d = 0; d < nd && v < sizeof want; d++)
                v += (size_t)snprintf(want + v, sizeof want - v, d ? "x%d" : "%d", sh[d]);
            return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" has shape [%s] but layer %d (%s) of \"%s\" needs %s",
                            f->path, name, t->ndim ? got : "scalar", i, l->name, m->arch_label, want);
        }
    }
    return NFV_OK;
}

/* Tensors of layer l and, for BatchNorm, num_batches_tracked (one I64,
 * optional). */
static nfv_status load_layer(nfv_context *ctx, nfv_layer *l, const nfv_st_file *f)
{
    char name[NFV_PARAM_NAME_MAX + 32];
    nfv_status s = NFV_OK;
    int nt = nfv_spec_tensor_count(&l->spec);
    for (int p = 0; !s && p < nt; p++)
        s = load_tensor(ctx, f, nfv_layer_tensor_name(l, p, name, sizeof name), nfv_layer_tensor(l, p));
    if (s || l->spec.kind != NFV_LAYER_BATCHNORM3D || !batches_tracked_name(l, name, sizeof name)) return s;
    const nfv_st_tensor *t = nfv_st_find(f, name);
    if (t) {
        if (t->numel != 1 || t->dtype != NFV_ST_I64)
            s = nfv_fail(NFV_ERR_FORMAT, "%s: \"%s\" must be one I64", f->path, name);
        else {
            long long x = 0;
            for (int b = 7; b >= 0; b--) x = (x << 8) | t->data[b];
            l->num_batches_tracked = x;
        }
    }
    return s;
}

/* Anything else in the file means it was made for another architecture
 * (tensors whose name starts with ignore_prefix excepted). */
static nfv_status check_no_stray(const nfv_model *m, const nfv_st_file *f, const char *ignore_prefix)
{
    char name[NFV_PARAM_NAME_MAX + 32];
    for (int i = 0; i < f->count; i++) {
        const char *tn = f->tensors[i].name;
        if (ignore_prefix && *ignore_prefix && !strncmp(tn, ignore_prefix, strlen(ignore_prefix))) continue;
        if (!strcmp(tn, SPECTRUM_TENSOR)) continue;
        int known = 0;
        for (int j = 0; !known && j < m->layer_count; j++) {
            const nfv_layer *l = &m->layers[j];
            int nt = nfv_spec_tensor_count(&l->spec);
            for (int p = 0; !known && p < nt; p++) known = !strcmp(tn, nfv_layer_tensor_name(l, p, name, sizeof name));
            if (!known && l->spec.kind == NFV_LAYER_BATCHNORM3D && batches_tracked_name(l, name, sizeof name))
                known = !strcmp(tn, name);
        }
        if (!known)
            return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" does not belong to the architecture \"%s\"", f->path,
                            tn, m->arch_label);
    }
    return NFV_OK;
}

nfv_status nfv_model_from_file(nfv_context *ctx, const nfv_st_file *f, const char *ignore_prefix, nfv_model **out)
{
    *out = NULL;
    const char *arch = nfv_st_meta(f, "arch"), *ishape = nfv_st_meta(f, "input_shape");
    if (!arch || !ishape)
        return nfv_fail(NFV_ERR_FORMAT, "%s: __metadata__ lacks \"arch\" or \"input_shape\" (export with tools/neurofv_torch.py)",
                        f->path);
    int shape[4];
    NFV_TRY(read_input_shape(f, ishape, shape));
    nfv_head head = NFV_HEAD_SOFTMAX;
    const char *hs = nfv_st_meta(f, "head");
    if (hs && nfv_head_parse(hs, &head)) return nfv_fail_context(NFV_ERR_FORMAT, "%s", f->path);

    /* Shapes and sizes first: a file of a few bytes may claim any grid. */
    nfv_model *m;
    nfv_status s = nfv_arch_check(arch, shape, 0, NULL);
    if (!s) s = nfv_model_new(arch, shape, 0, &m);
    if (s) return nfv_fail_context(NFV_ERR_FORMAT, "%s: architecture in __metadata__", f->path);
    m->ctx = ctx;
    m->head = head;
    if (head == NFV_HEAD_SOFTMAX && nfv_model_outputs(m) == 1) m->head = NFV_HEAD_BINARY;
    s = read_classes(m, f);
    if (!s) s = read_geometry(m, f);
    if (!s) s = read_target_scale(m, f);
    if (!s) s = read_spectrum(m, f);
    if (!s) s = check_param_shapes(m, f);
    if (!s) s = nfv_model_alloc_params(m, ctx);
    for (int i = 0; !s && i < m->layer_count; i++) s = load_layer(ctx, &m->layers[i], f);
    if (!s) s = check_no_stray(m, f, ignore_prefix);
    if (s) {
        nfv_model_free(m);
        return s;
    }
    *out = m;
    return NFV_OK;
}

nfv_status nfv_model_load(nfv_context *ctx, const char *path, nfv_model **out)
{
    *out = NULL;
    nfv_st_file f;
    NFV_TRY(nfv_st_read(path, &f));
    nfv_status s = nfv_model_from_file(ctx, &f, NULL, out);
    nfv_st_free(&f);
    return s;
}
