/* Architecture spec: parse and print the one-line layer syntax of model.h, presets. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

/* The reference model (docs/ARCHITECTURE.md): 4 x [Conv3d 3^3 pad 1 -> BN -> ReLU -> MaxPool 2]
 * with 8/16/32/64 channels, then Flatten, Dropout, Linear to the outputs. */
static const char *const REF4 =
    "conv(8,k3,p1) bn relu maxpool(2) conv(16,k3,p1) bn relu maxpool(2) "
    "conv(32,k3,p1) bn relu maxpool(2) conv(64,k3,p1) bn relu maxpool(2) flatten dropout(0.5) linear(classes)";

/* ref4 with a translation-invariant head: the same four conv blocks, conv4's
 * block without its pool, then the mean over places (gap) and Linear 64 ->
 * outputs.  ref4's flatten + Linear weighs every place of pool4's 5x6x5 map
 * on its own, so a class logit can be driven by a place where no lesion
 * ever was (README, "At the paper's 2 mm grid"); here the evidence is the
 * same wherever it is. */
static const char *const REF4_GAP =
    "conv(8,k3,p1) bn relu maxpool(2) conv(16,k3,p1) bn relu maxpool(2) "
    "conv(32,k3,p1) bn relu maxpool(2) conv(64,k3,p1) bn relu gap flatten linear(classes)";

/* The authors' notebook model on 1x96x114x96: unpadded 3^3 convs 1->8->32->64->64
 * with ELU and three max pools (2, 3, 2) give 64x4x6x4 = 6144 features, then
 * Linear 6144 -> 100 -> outputs. */
static const char *const NOTEBOOK =
    "conv(8,k3) elu(1) maxpool(2) conv(32,k3) elu(1) maxpool(3) conv(64,k3) elu(1) maxpool(2) "
    "conv(64,k3) elu(1) flatten linear(100) elu(1) linear(classes)";

static const char *preset_text(const char *spec)
{
    if (!strcmp(spec, "ref4")) return REF4;
    if (!strcmp(spec, "ref4-gap")) return REF4_GAP;
    if (!strcmp(spec, "notebook")) return NOTEBOOK;
    return NULL;
}

int nfv_arch_preset_input(const char *spec, int input_shape[4], double voxel_mm[3])
{
    if (!spec) return 0;
    int d = 0, h = 0, w = 0;
    if (!strcmp(spec, "ref4") || !strcmp(spec, "ref4-gap")) d = 91, h = 109, w = 91;
    else if (!strcmp(spec, "notebook")) d = 96, h = 114, w = 96;
    else return 0;
    /* (C, D, H, W) with D = z, H = y, W = x (volume.h); the MNI grid is
     * 91 (x) x 109 (y) x 91 (z) at 2 mm. */
    input_shape[0] = 1, input_shape[1] = d, input_shape[2] = h, input_shape[3] = w;
    voxel_mm[0] = voxel_mm[1] = voxel_mm[2] = 2.0;
    return 1;
}

const char *nfv_head_name(nfv_head h)
{
    switch (h) {
    case NFV_HEAD_SOFTMAX: return "softmax";
    case NFV_HEAD_BINARY: return "binary";
    case NFV_HEAD_REGRESSION: return "regression";
    }
    return "?";
}

nfv_status nfv_head_parse(const char *s, nfv_head *out)
{
    for (int h = 0; h <= NFV_HEAD_REGRESSION; h++)
        if (s && !strcmp(s, nfv_head_name((nfv_head)h))) {
            *out = (nfv_head)h;
            return NFV_OK;
        }
    return nfv_fail(NFV_ERR_INVALID_ARG, "unknown head \"%s\" (softmax, binary, regression)", s ? s : "(null)");
}

void nfv_arch_free(nfv_arch *arch)
{
    if (!arch) return;
    free(arch->layers);
    arch->layers = NULL;
    arch->count = 0;
}

/* "3" or "3x5x5" (d x h x w) into v[3]. */
static int parse_triple(const char *s, int v[3])
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || a < 0 || a > 100000) return 0;
    if (!*end) {
        v[0] = v[1] = v[2] = (int)a;
        return 1;
    }
    if (*end != 'x') return 0;
    long b = strtol(end + 1, &end, 10);
    if (*end != 'x' || b < 0 || b > 100000) return 0;
    long c = strtol(end + 1, &end, 10);
    if (*end || c < 0 || c > 100000) return 0;
    v[0] = (int)a, v[1] = (int)b, v[2] = (int)c;
    return 1;
}

static int parse_int(const char *s, int *v)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end || a < 1 || a > 100000000) return 0;
    *v = (int)a;
    return 1;
}

static int parse_float(const char *s, float *v)
{
    char *end;
    double a = strtod(s, &end);
    if (end == s || *end || !isfinite(a)) return 0;
    *v = (float)a;
    return 1;
}

#define MAX_ARGS 8

/* Parse one word "name" or "name(a,b,...)" into l; returns 0 with a message on error. */
static nfv_status parse_word(const char *name, char args[][32], int nargs, int classes, int word_no,
                             nfv_layer_spec *l)
{
    memset(l, 0, sizeof *l);
    for (int i = 0; i < 3; i++) l->kernel[i] = 1, l->stride[i] = 1;
#define BAD(...) return nfv_fail(NFV_ERR_INVALID_ARG, "architecture word %d \"%s\": " __VA_ARGS__)
    if (!strcmp(name, "conv")) {
        l->kind = NFV_LAYER_CONV3D;
        l->bias = 1;
        for (int i = 0; i < 3; i++) l->kernel[i] = 3, l->padding[i] = 0;
        if (nargs < 1 || !parse_int(args[0], &l->features)) BAD("needs the output channels first, e.g. conv(8,k3,p1)", word_no, name);
        for (int a = 1; a < nargs; a++) {
            const char *s = args[a];
            if (!strcmp(s, "nobias")) l->bias = 0;
            else if (s[0] == 'k' && parse_triple(s + 1, l->kernel) && l->kernel[0] && l->kernel[1] && l->kernel[2]) continue;
            else if (s[0] == 's' && parse_triple(s + 1, l->stride) && l->stride[0] && l->stride[1] && l->stride[2]) continue;
            else if (s[0] == 'p' && parse_triple(s + 1, l->padding)) continue;
            else if (s[0] == 'd' && parse_triple(s + 1, l->dilation) && l->dilation[0] && l->dilation[1] && l->dilation[2]) continue;
            else if (s[0] == 'g' && parse_int(s + 1, &l->groups)) continue;
            else BAD("bad option \"%s\" (kK, sS, pP, dD, gG, nobias)", word_no, name, s);
        }
        return NFV_OK;
    }
    if (!strcmp(name, "maxpool") || !strcmp(name, "avgpool")) {
        l->kind = name[0] == 'm' ? NFV_LAYER_MAXPOOL3D : NFV_LAYER_AVGPOOL3D;
        if (nargs < 1 || nargs > 3 || !parse_triple(args[0], l->kernel) || !l->kernel[0] || !l->kernel[1] || !l->kernel[2])
            BAD("expects (kernel[,stride[,padding]]), e.g. maxpool(2)", word_no, name);
        memcpy(l->stride, l->kernel, sizeof l->stride);
        if (nargs >= 2 && (!parse_triple(args[1], l->stride) || !l->stride[0] || !l->stride[1] || !l->stride[2]))
            BAD("bad stride \"%s\"", word_no, name, args[1]);
        if (nargs >= 3 && !parse_triple(args[2], l->padding)) BAD("bad padding \"%s\"", word_no, name, args[2]);
        for (int i = 0; i < 3; i++)
            if (2 * l->padding[i] > l->kernel[i]) BAD("padding must be at most half the kernel", word_no, name);
        return NFV_OK;
    }
    if (!strcmp(name, "bn")) {
        l->kind = NFV_LAYER_BATCHNORM3D;
        l->alpha = 1e-5f;
        if (nargs > 1 || (nargs == 1 && (!parse_float(args[0], &l->alpha) || l->alpha <= 0)))
            BAD("expects no argument or a positive eps", word_no, name);
        return NFV_OK;
    }
    if (!strcmp(name, "relu") || !strcmp(name, "flatten") || !strcmp(name, "gap")) {
        l->kind = name[0] == 'r' ? NFV_LAYER_RELU : name[0] == 'f' ? NFV_LAYER_FLATTEN : NFV_LAYER_GAP;
        if (nargs) BAD("takes no argument", word_no, name);
        return NFV_OK;
    }
    if (!strcmp(name, "lrelu") || !strcmp(name, "elu")) {
        l->kind = name[0] == 'l' ? NFV_LAYER_LEAKY_RELU : NFV_LAYER_ELU;
        l->alpha = name[0] == 'l' ? 0.01f : 1.0f;
        if (nargs > 1 || (nargs == 1 && !parse_float(args[0], &l->alpha))) BAD("expects one number", word_no, name);
        return NFV_OK;
    }
    if (!strcmp(name, "dropout")) {
        l->kind = NFV_LAYER_DROPOUT;
        l->alpha = 0.5f;
        if (nargs > 1 || (nargs == 1 && (!parse_float(args[0], &l->alpha) || l->alpha < 0 || l->alpha >= 1)))
            BAD("expects a probability in [0, 1)", word_no, name);
        return NFV_OK;
    }
    if (!strcmp(name, "linear")) {
        l->kind = NFV_LAYER_LINEAR;
        l->bias = 1;
        if (nargs < 1) BAD("needs the output features, e.g. linear(3)", word_no, name);
        if (!strcmp(args[0], "classes")) {
            if (classes < 1) BAD("\"classes\" needs the number of outputs (unknown here)", word_no, name);
            l->features = classes;
        } else if (!parse_int(args[0], &l->features)) {
            BAD("bad feature count \"%s\"", word_no, name, args[0]);
        }
        for (int a = 1; a < nargs; a++) {
            if (!strcmp(args[a], "nobias")) l->bias = 0;
            else BAD("bad option \"%s\" (nobias)", word_no, name, args[a]);
        }
        return NFV_OK;
    }
    BAD("unknown layer (conv, maxpool, avgpool, bn, relu, lrelu, elu, dropout, flatten, gap, linear)", word_no, name);
#undef BAD
}

nfv_status nfv_arch_parse(const char *spec, int classes, nfv_arch *out)
{
    memset(out, 0, sizeof *out);
    if (!spec) return nfv_fail(NFV_ERR_INVALID_ARG, "architecture: no spec given");
    const char *preset = preset_text(spec);
    if (preset) spec = preset;
    nfv_status graph_status;
    if (nfv_arch_graph_preset(spec, classes, out, &graph_status)) return graph_status;
    while (isspace((unsigned char)*spec)) spec++;
    if (*spec == '{') return nfv_arch_from_json(spec, out);
    int cap = 16;
    out->layers = malloc((size_t)cap * sizeof *out->layers);
    if (!out->layers) return nfv_fail(NFV_ERR_NO_MEMORY, "architecture: out of memory");
    const char *p = spec;
    int word_no = 0;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        word_no++;
        char name[32];
        int n = 0;
        while (isalnum((unsigned char)*p) || *p == '_') {
            if (n < 31) name[n++] = (char)tolower((unsigned char)*p);
            p++;
        }
        name[n] = 0;
        if (!n) {
            nfv_arch_free(out);
            return nfv_fail(NFV_ERR_INVALID_ARG, "architecture word %d: unexpected character '%c' in \"%s\"", word_no,
                            *p, spec);
        }
        char args[MAX_ARGS][32];
        int nargs = 0;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '(') {
            p++;
            for (;;) {
                while (isspace((unsigned char)*p)) p++;
                if (nargs == MAX_ARGS) {
                    nfv_arch_free(out);
                    return nfv_fail(NFV_ERR_INVALID_ARG, "architecture word %d \"%s\": too many arguments", word_no, name);
                }
                int m = 0;
                while (*p && *p != ',' && *p != ')' && !isspace((unsigned char)*p)) {
                    if (m < 31) args[nargs][m++] = *p;
                    p++;
                }
                args[nargs][m] = 0;
                while (isspace((unsigned char)*p)) p++;
                if (m) nargs++;
                if (*p == ',') {
                    p++;
                    continue;
                }
                if (*p == ')') {
                    p++;
                    break;
                }
                nfv_arch_free(out);
                return nfv_fail(NFV_ERR_INVALID_ARG, "architecture word %d \"%s\": missing ')'", word_no, name);
            }
        }
        if (out->count == cap) {
            cap *= 2;
            nfv_layer_spec *grown = realloc(out->layers, (size_t)cap * sizeof *grown);
            if (!grown) {
                nfv_arch_free(out);
                return nfv_fail(NFV_ERR_NO_MEMORY, "architecture: out of memory");
            }
            out->layers = grown;
        }
        nfv_status s = parse_word(name, args, nargs, classes, word_no, &out->layers[out->count]);
        if (s) {
            nfv_arch_free(out);
            return s;
        }
        out->count++;
    }
    if (!out->count) {
        nfv_arch_free(out);
        return nfv_fail(NFV_ERR_INVALID_ARG, "architecture: empty spec");
    }
    return NFV_OK;
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int appendf(char *buf, size_t cap, size_t *used, const char *fmt, ...)
{
    if (*used >= cap) return 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, cap - *used, fmt, ap);
    va_end(ap);
    if (n > 0) *used += (size_t)n;
    if (*used >= cap) *used = cap - 1;
    return n;
}

/* Shortest decimal that reads back as the same float ("0.1", not "0.100000001"). */
static const char *float_str(float v, char *s, size_t cap)
{
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(s, cap, "%.*g", prec, v);
        if (strtof(s, NULL) == v) break;
    }
    return s;
}

static void triple_str(const int v[3], char *s, size_t cap)
{
    if (v[0] == v[1] && v[1] == v[2]) snprintf(s, cap, "%d", v[0]);
    else snprintf(s, cap, "%dx%dx%d", v[0], v[1], v[2]);
}

const char *nfv_arch_print(const nfv_arch *arch, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < arch->count; i++) {
        const nfv_layer_spec *l = &arch->layers[i];
        char k[40], s[40], pd[40], f[40];
        triple_str(l->kernel, k, sizeof k);
        triple_str(l->stride, s, sizeof s);
        triple_str(l->padding, pd, sizeof pd);
        int zero_pad = !l->padding[0] && !l->padding[1] && !l->padding[2];
        if (i) appendf(buf, cap, &used, " ");
        switch (l->kind) {
        case NFV_LAYER_CONV3D:
            appendf(buf, cap, &used, "conv(%d,k%s", l->features, k);
            if (l->stride[0] != 1 || l->stride[1] != 1 || l->stride[2] != 1) appendf(buf, cap, &used, ",s%s", s);
            if (!zero_pad) appendf(buf, cap, &used, ",p%s", pd);
            if (l->dilation[0] > 1 || l->dilation[1] > 1 || l->dilation[2] > 1) {
                int d[3] = {l->dilation[0] ? l->dilation[0] : 1, l->dilation[1] ? l->dilation[1] : 1,
                            l->dilation[2] ? l->dilation[2] : 1};
                char ds[40];
                triple_str(d, ds, sizeof ds);
                appendf(buf, cap, &used, ",d%s", ds);
            }
            if (l->groups > 1) appendf(buf, cap, &used, ",g%d", l->groups);
            appendf(buf, cap, &used, "%s)", l->bias ? "" : ",nobias");
            break;
        case NFV_LAYER_MAXPOOL3D:
        case NFV_LAYER_AVGPOOL3D: {
            const char *n = l->kind == NFV_LAYER_MAXPOOL3D ? "maxpool" : "avgpool";
            int same = !memcmp(l->kernel, l->stride, sizeof l->kernel);
            if (same && zero_pad) appendf(buf, cap, &used, "%s(%s)", n, k);
            else if (zero_pad) appendf(buf, cap, &used, "%s(%s,%s)", n, k, s);
            else appendf(buf, cap, &used, "%s(%s,%s,%s)", n, k, s, pd);
            break;
        }
        case NFV_LAYER_BATCHNORM3D:
            if (l->alpha == 1e-5f) appendf(buf, cap, &used, "bn");
            else appendf(buf, cap, &used, "bn(%s)", float_str(l->alpha, f, sizeof f));
            break;
        case NFV_LAYER_RELU: appendf(buf, cap, &used, "relu"); break;
        case NFV_LAYER_LEAKY_RELU: appendf(buf, cap, &used, "lrelu(%s)", float_str(l->alpha, f, sizeof f)); break;
        case NFV_LAYER_ELU: appendf(buf, cap, &used, "elu(%s)", float_str(l->alpha, f, sizeof f)); break;
        case NFV_LAYER_DROPOUT: appendf(buf, cap, &used, "dropout(%s)", float_str(l->alpha, f, sizeof f)); break;
        case NFV_LAYER_FLATTEN: appendf(buf, cap, &used, "flatten"); break;
        case NFV_LAYER_GAP: appendf(buf, cap, &used, "gap"); break;
        case NFV_LAYER_LINEAR: appendf(buf, cap, &used, "linear(%d%s)", l->features, l->bias ? "" : ",nobias"); break;
        default: appendf(buf, cap, &used, "%s", nfv_layer_op_word(l->kind)); break; /* graphs print as JSON */
        }
    }
    return buf;
}

/* Sizes a model may have: a device and the host hold every layer output of
 * a sample and every parameter in one buffer each, and an int indexes them. */
#define ARCH_MAX_VALUES (1LL << 30) /* input values, and one layer's output, per sample */
#define ARCH_MAX_PARAMS (1LL << 31) /* parameters in all */

static double shape_product(int ndim, const int *shape)
{
    double n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

nfv_status nfv_arch_check(const char *spec, const int input_shape[4], int outputs, int *model_outputs)
{
    for (int i = 0; i < 4; i++)
        if (input_shape[i] < 1)
            return nfv_fail(NFV_ERR_INVALID_ARG, "input shape %dx%dx%dx%d (C, D, H, W) has an entry < 1",
                            input_shape[0], input_shape[1], input_shape[2], input_shape[3]);
    if (shape_product(4, input_shape) > (double)ARCH_MAX_VALUES)
        return nfv_fail(NFV_ERR_INVALID_ARG, "input %dx%dx%dx%d (C, D, H, W) has %.3g values per sample (at most 2^30)",
                        input_shape[0], input_shape[1], input_shape[2], input_shape[3], shape_product(4, input_shape));
    nfv_model *m;
    NFV_TRY(nfv_model_new(spec, input_shape, outputs, &m));
    nfv_status s = NFV_OK;
    double params = 0;
    /* In order, stopping at the first layer too large: every later shape was
     * laid out from sizes that fit in an int. */
    for (int i = 0; i < m->layer_count && !s; i++) {
        const nfv_layer *l = &m->layers[i];
        double out = shape_product(l->out_ndim, l->out_shape);
        if (out > (double)ARCH_MAX_VALUES)
            s = nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s) gives %.3g values per sample (at most 2^30)", i, l->name,
                         out);
        for (int p = 0; p < l->nparams; p++) {
            int sh[5];
            int nd = nfv_model_param_shape(l, p, sh);
            params += shape_product(nd, sh);
        }
    }
    if (!s && params > (double)ARCH_MAX_PARAMS)
        s = nfv_fail(NFV_ERR_INVALID_ARG, "%.3g parameters (at most 2^31)", params);
    if (!s && model_outputs) *model_outputs = nfv_model_outputs(m);
    nfv_model_free(m);
    return s;
}
