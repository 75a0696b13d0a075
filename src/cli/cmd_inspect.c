/* `neurofv inspect`: a model's (or an architecture's) layers, shapes, sizes,
 * and a debug path computing outputs and input gradients for given inputs
 * (used by tools/torch_parity.py). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "cli.h"
#include "neurofv/train.h"

NFV_COMMAND(inspect, "inspect", "Show a model's layers, output shapes, parameters and FLOPs")

/* Raw little-endian float32 file into a malloc'ed array. */
static nfv_status read_raw(const char *path, float **out, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (!f) return nfv_fail(NFV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0 || n % 4) {
        fclose(f);
        return nfv_fail(NFV_ERR_FORMAT, "%s: %ld bytes is not a whole number of float32 values", path, n);
    }
    *out = malloc((size_t)n);
    if (!*out) {
        fclose(f);
        return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    size_t got = fread(*out, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(*out);
        return nfv_fail(NFV_ERR_IO, "%s: short read", path);
    }
    *count = (size_t)n / 4;
    size_t bad = 0;
    for (size_t i = 0; i < *count; i++) bad += !isfinite((*out)[i]);
    if (bad) {
        free(*out);
        return nfv_fail(NFV_ERR_FORMAT, "%s: %zu of %zu values are NaN or Inf", path, bad, *count);
    }
    return NFV_OK;
}

static nfv_status write_raw(const char *path, const float *a, size_t na, const float *b, size_t nb)
{
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "wb"));
    if (fwrite(a, 4, na, af.f) != na || (b && fwrite(b, 4, nb, af.f) != nb)) {
        nfv_atomic_abort(&af);
        return nfv_fail(NFV_ERR_IO, "%s: write failed", path);
    }
    return nfv_atomic_commit(&af);
}

/* Eval-mode outputs for the inputs in `input` and, with grad_class >= 0, the
 * input gradient of sum over the batch of output unit grad_class. */
static nfv_status debug_forward(nfv_context *ctx, nfv_model *m, const char *input, int grad_class, const char *dump)
{
    float *x = NULL;
    size_t count = 0;
    nfv_status rs = read_raw(input, &x, &count);
    if (rs) return nfv_fail_context(rs, "--input");
    size_t per = nfv_shape_numel(4, m->input_shape);
    if (count % per) {
        free(x);
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %zu floats is not a multiple of the input size %zu", input, count, per);
    }
    int n = (int)(count / per), k = nfv_model_outputs(m);
    if (grad_class >= k) {
        free(x);
        return nfv_fail(NFV_ERR_INVALID_ARG, "--grad-class %d: the model has %d outputs", grad_class, k);
    }
    int xs[5] = {n, m->input_shape[0], m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    nfv_tensor xt, dx, g;
    memset(&dx, 0, sizeof dx), memset(&g, 0, sizeof g);
    float *outputs = malloc((size_t)n * k * sizeof(float)), *seed = calloc((size_t)n * k, sizeof(float));
    float *dxh = grad_class >= 0 ? malloc(count * sizeof(float)) : NULL;
    nfv_status s = nfv_tensor_create(ctx, &xt, 5, xs);
    if (!s) s = nfv_tensor_upload(ctx, &xt, x);
    if (!s) s = nfv_model_forward(m, ctx, &xt, -1, 0);
    if (!s) s = nfv_tensor_download(ctx, nfv_model_activation(m, m->layer_count - 1), outputs);
    if (!s && grad_class >= 0) {
        int gs[2] = {n, k};
        for (int i = 0; i < n; i++) seed[(size_t)i * k + grad_class] = 1.0f;
        s = nfv_tensor_create(ctx, &g, 2, gs);
        if (!s) s = nfv_tensor_upload(ctx, &g, seed);
        if (!s) s = nfv_tensor_create(ctx, &dx, 5, xs);
        if (!s) s = nfv_model_backward(m, ctx, -1, &g, 0, &dx);
        if (!s) s = nfv_tensor_download(ctx, &dx, dxh);
    }
    if (!s) s = write_raw(dump, outputs, (size_t)n * k, dxh, count);
    if (!s) printf("wrote %d x %d outputs%s to %s\n", n, k, dxh ? " and the input gradient" : "", dump);
    nfv_tensor_free(&xt), nfv_tensor_free(&dx), nfv_tensor_free(&g);
    free(x), free(outputs), free(seed), free(dxh);
    return s;
}

/* Training-mode outputs and parameter gradients of the head's loss for the
 * inputs in `input` and the class labels "l0,l1,...": outputs (N x K), then
 * every parameter's gradient in state_dict order (weight, bias per layer). */
static nfv_status debug_train_grads(nfv_context *ctx, nfv_model *m, const char *input, const char *labels,
                                    const char *dump)
{
    float *x = NULL;
    size_t count = 0;
    nfv_status rs = read_raw(input, &x, &count);
    if (rs) return nfv_fail_context(rs, "--input");
    size_t per = nfv_shape_numel(4, m->input_shape);
    int n = (int)(count / per), k = nfv_model_outputs(m);
    float *targets = calloc((size_t)n + 1, sizeof(float)), *outputs = malloc((size_t)n * k * sizeof(float));
    nfv_status s = count % per ? nfv_fail(NFV_ERR_INVALID_ARG, "%s: not a whole number of inputs", input) : NFV_OK;
    /* n class indices, each a class of the model */
    const char *p = labels;
    int classes = m->head == NFV_HEAD_SOFTMAX ? k : 2;
    for (int i = 0; !s && i < n; i++) {
        char *end;
        long c = strtol(p, &end, 10);
        if (end == p || c < 0 || c >= classes || (i < n - 1 ? *end != ',' : *end != 0))
            s = nfv_fail(NFV_ERR_INVALID_ARG, "--labels needs %d comma-separated classes 0..%d, got \"%s\"", n,
                         classes - 1, labels);
        targets[i] = (float)c;
        p = end + 1;
    }
    nfv_trainer *t = NULL;
    nfv_optim_config opt;
    nfv_optim_config_default(&opt);
    opt.kind = NFV_OPT_SGD;
    if (!s) s = nfv_trainer_create(ctx, m, &opt, NULL, &t);
    if (!s) s = nfv_trainer_step(t, x, targets, n, NULL, outputs);
    size_t total = 0;
    for (int i = 0; i < m->layer_count; i++)
        for (int q = 0; q < m->layers[i].nparams; q++) total += m->layers[i].grad[q].numel;
    float *grads = malloc((total + 1) * sizeof(float));
    size_t at = 0;
    for (int i = 0; !s && i < m->layer_count; i++)
        for (int q = 0; !s && q < m->layers[i].nparams; q++) {
            s = nfv_tensor_download(ctx, &m->layers[i].grad[q], grads + at);
            at += m->layers[i].grad[q].numel;
        }
    if (!s) s = write_raw(dump, outputs, (size_t)n * k, grads, total);
    if (!s) printf("wrote %d x %d training-mode outputs and %zu parameter gradients to %s\n", n, k, total, dump);
    nfv_trainer_free(t);
    free(x), free(targets), free(outputs), free(grads);
    return s;
}

/* The input of --arch: the preset's grid, else 91,109,91, or --shape
 * X,Y,Z; the architecture checked on it (syntax, shapes, sizes) and against
 * --classes before anything is allocated.  0 or the exit code. */
static int arch_input(const char *arch, const char *shape, int classes, int in[4])
{
    double vox[3];
    nfv_arch_preset_input(arch, in, vox);
    int xyz[3];
    char tail;
    if (shape && (sscanf(shape, "%d,%d,%d%c", &xyz[0], &xyz[1], &xyz[2], &tail) != 3 || xyz[0] < 1 || xyz[1] < 1 ||
                  xyz[2] < 1 || xyz[0] > 4096 || xyz[1] > 4096 || xyz[2] > 4096))
        return cli_failf("inspect", "--shape expects X,Y,Z voxels, each 1..4096, got \"%s\"", shape);
    if (shape) in[1] = xyz[2], in[2] = xyz[1], in[3] = xyz[0];
    if (classes < 1) return cli_failf("inspect", "--classes expects K >= 1, got %d", classes);
    int outputs = 0;
    nfv_status s = nfv_arch_check(arch, in, classes == 1 ? 1 : classes, &outputs);
    if (!s && outputs != (classes == 1 ? 1 : classes) && !(outputs == 1 && classes == 2))
        s = nfv_fail(NFV_ERR_INVALID_ARG, "the last layer gives %d outputs, not --classes %d", outputs, classes);
    if (s)
        return cli_fail("inspect", nfv_fail_context(s, "--arch \"%.200s\" on input %dx%dx%d (--shape X,Y,Z)", arch,
                                                    in[3], in[2], in[1]));
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    const char *arch = NULL, *shape = NULL, *device = NULL, *input = NULL, *dump = NULL, *save = NULL, *labels = NULL;
    unsigned long long seed = 1;
    int classes = 2, grad_class = -1;
    const cli_option opts[] = {
        {"--arch", CLI_STRING, &arch, "SPEC", "inspect an architecture spec or preset instead of a model file"},
        {"--shape", CLI_STRING, &shape, "X,Y,Z", "input grid for --arch (default: the preset's, else 91,109,91)"},
        {"--classes", CLI_INT, &classes, "K", "outputs of linear(classes) for --arch (default 2)"},
        {"--input", CLI_STRING, &input, "FILE",
         "debug: raw float32 inputs (N x C x D x H x W) to run in eval mode (needs --dump)"},
        {"--grad-class", CLI_INT, &grad_class, "K", "debug: also the input gradient of output unit K"},
        {"--labels", CLI_STRING, &labels, "L0,L1,..",
         "debug: training mode instead: outputs, then parameter gradients of the loss for these labels"},
        {"--dump", CLI_STRING, &dump, "FILE", "debug: write outputs (N x K float32) then the input gradient"},
        {"--save", CLI_STRING, &save, "MODEL", "with --arch: write the freshly initialized model (PyTorch defaults)"},
        {"--seed", CLI_U64, &seed, "S", "with --arch: initialization seed (default 1)"},
        {"--device", CLI_STRING, &device, "DEV", "OpenCL device (see neurofv devices)"},
        {0},
    };
    const char *pos[1] = {NULL};
    int npos = 0;
    int r = cli_parse("inspect", "MODEL | --arch SPEC [options]",
                      "Print each layer with its nn.Sequential index, name (for visualization targets), output shape "
                      "per sample, parameter count and forward FLOPs per sample.",
                      opts, argc, argv, pos, 1, &npos);
    if (r) return r == 1 ? 0 : 2;
    if (!npos && !arch) return cli_failf("inspect", "give a MODEL file or --arch SPEC (see neurofv inspect --help)");
    if (input && !dump) return cli_failf("inspect", "--input needs --dump FILE");
    if (grad_class < -1) return cli_failf("inspect", "--grad-class expects an output index >= 0, got %d", grad_class);
    int in[4] = {1, 91, 109, 91};
    if (!npos && (r = arch_input(arch, shape, classes, in))) return r;
    nfv_context *ctx = NULL;
    nfv_model *m = NULL;
    nfv_status s = nfv_context_create(device, &ctx);
    if (s) return cli_fail("inspect", s);
    if (npos) {
        s = nfv_model_open(ctx, pos[0], &m);
    } else {
        s = nfv_model_create_from_spec(ctx, arch, in, classes == 1 ? 2 : classes, NULL,
                                       classes == 1 ? NFV_HEAD_BINARY : NFV_HEAD_SOFTMAX, seed, &m);
        if (!s && save) s = nfv_model_save(m, save);
    }
    if (s) {
        nfv_context_free(ctx);
        return cli_fail("inspect", s);
    }
    if (input) {
        s = labels ? debug_train_grads(ctx, m, input, labels, dump) : debug_forward(ctx, m, input, grad_class, dump);
        nfv_model_free(m);
        nfv_context_free(ctx);
        return s ? cli_fail("inspect", s) : 0;
    }
    printf("arch:   %s\n", m->arch_label);
    printf("input:  %dx%dx%dx%d (C, D, H, W), voxel %gx%gx%g mm, norm %s\n", m->input_shape[0], m->input_shape[1],
           m->input_shape[2], m->input_shape[3], m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2],
           nfv_norm_method_name(m->norm));
    if (m->head == NFV_HEAD_REGRESSION) /* the de-standardization of nfv_model_predict */
        printf("head:   regression, prediction = %.6g + %.6g x output", m->target_mean, m->target_sd);
    else printf("head:   %s, classes:", nfv_head_name(m->head));
    for (int i = 0; i < m->class_count; i++) printf(" %s", m->class_names[i]);
    /* Graphs get an inputs column; names as wide as the longest. */
    int width = 10;
    for (int i = 0; i < m->layer_count; i++) {
        int len = (int)strlen(m->layers[i].name);
        if (len > width) width = len;
    }
    printf("\n\n%4s  %-*s %-26s %-18s %12s %12s%s\n", "idx", width, "name", "layer", "output", "params", "MFLOPs",
           m->is_graph ? "  inputs" : "");
    double total_flops = 0;
    for (int i = 0; i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        nfv_arch one = {(nfv_layer_spec *)&l->spec, 1};
        char spec[128], out[64], inputs[256] = "";
        nfv_arch_print(&one, spec, sizeof spec);
        if (l->out_ndim == 4)
            snprintf(out, sizeof out, "%dx%dx%dx%d", l->out_shape[0], l->out_shape[1], l->out_shape[2], l->out_shape[3]);
        else snprintf(out, sizeof out, "%d", l->out_shape[0]);
        double fl = nfv_layer_flops(l);
        total_flops += fl;
        size_t used = 0;
        for (int k = 0; m->is_graph && k < l->n_inputs && used < sizeof inputs; k++)
            used += (size_t)snprintf(inputs + used, sizeof inputs - used, "%s%s", k ? ", " : "  ",
                                     l->inputs[k] < 0 ? "(input)" : m->layers[l->inputs[k]].name);
        printf("%4d  %-*s %-26s %-18s %12lld %12.2f%s\n", i, width, l->name, spec, out, nfv_layer_param_count(l),
               fl / 1e6, inputs);
    }
    printf("\ntotal: %lld parameters (%.2f MB float32), %.3f GFLOP forward per sample\n", nfv_model_param_count(m),
           (double)nfv_model_param_count(m) * 4 / 1e6, total_flops / 1e9);
    nfv_model_free(m);
    nfv_context_free(ctx);
    return 0;
}
