/* Graph presets for `--arch`: the 3D CNNs neuroimaging researchers use,
 * with node and tensor names as the PyTorch modules' state_dict keys, so a
 * model file's tensors load into the matching torch module and back.
 *
 *   resnet10, resnet18 [ (W) ]  MONAI's 3D ResNet with basic blocks and
 *       shortcut type B (1x1x1 conv + BN when the shape changes): conv1
 *       7^3 stride 2 pad 3 (MedicalNet's stem; MONAI's conv1_t_stride=2),
 *       bn1, relu, maxpool 3^3 s2 p1, layer1-4 of [1,1,1,1] / [2,2,2,2]
 *       blocks with W, 2W, 4W, 8W channels (W = 64 unless given), global
 *       average pool, fc.  Block b of layer L is "layerL.b"; its output
 *       (after the residual add and ReLU) is the node named "layerL.b".
 *   densenet [ (G,F[,L]) ]  a small 3D DenseNet in MONAI's layout: conv0 7^3
 *       s2 p3 to F channels (default 32), norm0, relu0, pool0 (max 3^3 s2 p1),
 *       three dense blocks of L layers (default 4) (BN-ReLU-Conv1 to 4G, BN-ReLU-Conv3
 *       to G, concatenated; growth G default 16), transitions (BN-ReLU-Conv1
 *       halving the channels, avgpool 2), norm5, relu, global average pool,
 *       Linear.  Block k's output is "features.denseblockk".
 *   sfcn  Peng et al. 2021 (UK Biobank brain age): channels 32-64-128-256-
 *       256-64; blocks 0-4 Conv3d k3 p1 -> BN -> MaxPool 2 -> ReLU, block 5
 *       Conv3d k1 -> BN -> ReLU; classifier AvgPool3d [5,6,5], Dropout 0.5,
 *       Conv3d k1 to the outputs, log-softmax over them.  2,952,936
 *       parameters at 40 outputs on its input 1x160x192x160. */
#include "model/model_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct builder {
    nfv_arch *a;
    int cap;
    nfv_status status;
} builder;

/* Appends a node reading inputs in[0..n) (NFV_INPUT_NODE = the model
 * input); named by the printf format; returns its index. */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static int node(builder *b, nfv_layer_spec spec, int n, const int *in, const char *fmt, ...)
{
    if (b->status) return 0;
    if (b->a->count == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        nfv_layer_spec *grown = realloc(b->a->layers, (size_t)cap * sizeof *grown);
        if (!grown) {
            b->status = nfv_fail(NFV_ERR_NO_MEMORY, "architecture: out of memory");
            return 0;
        }
        b->a->layers = grown;
        b->cap = cap;
    }
    spec.n_inputs = n;
    for (int i = 0; i < n; i++) spec.inputs[i] = in[i];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(spec.name, sizeof spec.name, fmt, ap);
    va_end(ap);
    /* Parameters and buffers under "<name>.weight", ... as in state_dict. */
    static const char *const bn_fields[4] = {"weight", "bias", "running_mean", "running_var"};
    int nt = nfv_spec_tensor_count(&spec);
    for (int t = 0; t < nt; t++)
        snprintf(spec.tensor_names[t], NFV_PARAM_NAME_MAX, "%s.%s", spec.name, bn_fields[t]);
    b->a->layers[b->a->count] = spec;
    return b->a->count++;
}

static nfv_layer_spec conv_spec(int out, int k, int stride, int pad, int bias)
{
    nfv_layer_spec s;
    memset(&s, 0, sizeof s);
    s.kind = NFV_LAYER_CONV3D;
    s.features = out;
    s.bias = bias;
    for (int a = 0; a < 3; a++) s.kernel[a] = k, s.stride[a] = stride, s.padding[a] = pad, s.dilation[a] = 1;
    return s;
}

static nfv_layer_spec pool_spec(nfv_layer_kind kind, int k, int stride, int pad)
{
    nfv_layer_spec s = conv_spec(0, k, stride, pad, 0);
    s.kind = kind;
    return s;
}

static nfv_layer_spec plain(nfv_layer_kind kind, float alpha)
{
    nfv_layer_spec s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.alpha = alpha;
    for (int a = 0; a < 3; a++) s.kernel[a] = s.stride[a] = s.dilation[a] = 1;
    return s;
}

/* One node after `from`. */
static int after(builder *b, nfv_layer_spec spec, int from, const char *name)
{
    return node(b, spec, 1, &from, "%s", name);
}

static int resnet(builder *b, const int blocks[4], int width, int classes)
{
    int x = node(b, conv_spec(width, 7, 2, 3, 0), 1, (int[]){NFV_INPUT_NODE}, "conv1");
    x = after(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), x, "bn1");
    x = after(b, plain(NFV_LAYER_RELU, 0), x, "relu");
    x = after(b, pool_spec(NFV_LAYER_MAXPOOL3D, 3, 2, 1), x, "maxpool");
    int in_ch = width;
    for (int L = 0; L < 4; L++) {
        int planes = width << L;
        for (int blk = 0; blk < blocks[L]; blk++) {
            int stride = L > 0 && blk == 0 ? 2 : 1;
            int block_in = x;
            int y = node(b, conv_spec(planes, 3, stride, 1, 0), 1, &x, "layer%d.%d.conv1", L + 1, blk);
            y = node(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), 1, &y, "layer%d.%d.bn1", L + 1, blk);
            y = node(b, plain(NFV_LAYER_RELU, 0), 1, &y, "layer%d.%d.relu1", L + 1, blk);
            y = node(b, conv_spec(planes, 3, 1, 1, 0), 1, &y, "layer%d.%d.conv2", L + 1, blk);
            y = node(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), 1, &y, "layer%d.%d.bn2", L + 1, blk);
            int shortcut = block_in;
            if (stride != 1 || in_ch != planes) {
                shortcut = node(b, conv_spec(planes, 1, stride, 0, 0), 1, &block_in, "layer%d.%d.downsample.0", L + 1, blk);
                shortcut = node(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), 1, &shortcut, "layer%d.%d.downsample.1", L + 1, blk);
            }
            int sum = node(b, plain(NFV_LAYER_ADD, 0), 2, (int[]){y, shortcut}, "layer%d.%d.add", L + 1, blk);
            x = node(b, plain(NFV_LAYER_RELU, 0), 1, &sum, "layer%d.%d", L + 1, blk);
            in_ch = planes;
        }
    }
    x = after(b, plain(NFV_LAYER_GAP, 0), x, "avgpool");
    x = after(b, plain(NFV_LAYER_FLATTEN, 0), x, "flatten");
    nfv_layer_spec fc = plain(NFV_LAYER_LINEAR, 0);
    fc.features = classes, fc.bias = 1;
    return after(b, fc, x, "fc");
}

static int densenet(builder *b, int growth, int init, int layers, int classes)
{
    const int block_config[3] = {layers, layers, layers}, bn_size = 4;
    int x = node(b, conv_spec(init, 7, 2, 3, 0), 1, (int[]){NFV_INPUT_NODE}, "features.conv0");
    x = after(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), x, "features.norm0");
    x = after(b, plain(NFV_LAYER_RELU, 0), x, "features.relu0");
    x = after(b, pool_spec(NFV_LAYER_MAXPOOL3D, 3, 2, 1), x, "features.pool0");
    int ch = init;
    for (int k = 0; k < 3; k++) {
        for (int j = 0; j < block_config[k]; j++) {
            char p[NFV_NODE_NAME_MAX];
            snprintf(p, sizeof p, "features.denseblock%d.denselayer%d.layers", k + 1, j + 1);
            int y = node(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), 1, &x, "%s.norm1", p);
            y = node(b, plain(NFV_LAYER_RELU, 0), 1, &y, "%s.relu1", p);
            y = node(b, conv_spec(bn_size * growth, 1, 1, 0, 0), 1, &y, "%s.conv1", p);
            y = node(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), 1, &y, "%s.norm2", p);
            y = node(b, plain(NFV_LAYER_RELU, 0), 1, &y, "%s.relu2", p);
            y = node(b, conv_spec(growth, 3, 1, 1, 0), 1, &y, "%s.conv2", p);
            int last = j == block_config[k] - 1;
            if (last) x = node(b, plain(NFV_LAYER_CONCAT, 0), 2, (int[]){x, y}, "features.denseblock%d", k + 1);
            else x = node(b, plain(NFV_LAYER_CONCAT, 0), 2, (int[]){x, y}, "features.denseblock%d.denselayer%d", k + 1, j + 1);
            ch += growth;
        }
        if (k < 2) {
            x = node(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), 1, &x, "features.transition%d.norm", k + 1);
            x = node(b, plain(NFV_LAYER_RELU, 0), 1, &x, "features.transition%d.relu", k + 1);
            ch /= 2;
            x = node(b, conv_spec(ch, 1, 1, 0, 0), 1, &x, "features.transition%d.conv", k + 1);
            x = node(b, pool_spec(NFV_LAYER_AVGPOOL3D, 2, 2, 0), 1, &x, "features.transition%d.pool", k + 1);
        }
    }
    x = after(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), x, "features.norm5");
    x = after(b, plain(NFV_LAYER_RELU, 0), x, "class_layers.relu");
    x = after(b, plain(NFV_LAYER_GAP, 0), x, "class_layers.pool");
    x = after(b, plain(NFV_LAYER_FLATTEN, 0), x, "class_layers.flatten");
    nfv_layer_spec out = plain(NFV_LAYER_LINEAR, 0);
    out.features = classes, out.bias = 1;
    return after(b, out, x, "class_layers.out");
}

static int sfcn(builder *b, int outputs)
{
    static const int channels[6] = {32, 64, 128, 256, 256, 64};
    int x = NFV_INPUT_NODE;
    for (int i = 0; i < 6; i++) {
        int last = i == 5;
        x = node(b, conv_spec(channels[i], last ? 1 : 3, 1, last ? 0 : 1, 1), 1, &x, "feature_extractor.conv_%d.0", i);
        x = node(b, plain(NFV_LAYER_BATCHNORM3D, 1e-5f), 1, &x, "feature_extractor.conv_%d.1", i);
        if (!last) x = node(b, pool_spec(NFV_LAYER_MAXPOOL3D, 2, 2, 0), 1, &x, "feature_extractor.conv_%d.2", i);
        x = node(b, plain(NFV_LAYER_RELU, 0), 1, &x, "feature_extractor.conv_%d.%d", i, last ? 2 : 3);
    }
    nfv_layer_spec avg = pool_spec(NFV_LAYER_AVGPOOL3D, 1, 1, 0);
    avg.kernel[0] = avg.stride[0] = 5, avg.kernel[1] = avg.stride[1] = 6, avg.kernel[2] = avg.stride[2] = 5;
    x = after(b, avg, x, "classifier.average_pool");
    x = after(b, plain(NFV_LAYER_DROPOUT, 0.5f), x, "classifier.dropout");
    x = after(b, conv_spec(outputs, 1, 1, 0, 1), x, "classifier.conv_6");
    return after(b, plain(NFV_LAYER_LOGSOFTMAX, 0), x, "log_softmax");
}

/* "name" or "name(a[,b[,c]])" with up to three positive integer arguments. */
static int preset_args(const char *spec, const char *name, int *a, int *b, int *c)
{
    size_t n = strlen(name);
    if (strncmp(spec, name, n)) return 0;
    if (!spec[n]) return 1;
    char close = 0;
    if (sscanf(spec + n, "(%d,%d,%d%c", a, b, c, &close) == 4) return close == ')' && *a > 0 && *b > 0 && *c > 0;
    if (sscanf(spec + n, "(%d,%d%c", a, b, &close) == 3) return close == ')' && *a > 0 && *b > 0;
    return sscanf(spec + n, "(%d%c", a, &close) == 2 && close == ')' && *a > 0;
}

int nfv_arch_graph_preset(const char *spec, int classes, nfv_arch *out, nfv_status *status)
{
    int a = 64, c = 0, d = 0;
    builder b = {out, 0, NFV_OK};
    memset(out, 0, sizeof *out);
    int outputs = classes > 0 ? classes : 1;
    if (preset_args(spec, "resnet10", &a, &c, &d) && !c) resnet(&b, (const int[4]){1, 1, 1, 1}, a, outputs);
    else if ((a = 64, c = 0, preset_args(spec, "resnet18", &a, &c, &d)) && !c)
        resnet(&b, (const int[4]){2, 2, 2, 2}, a, outputs);
    else if ((a = 16, c = 32, d = 4, preset_args(spec, "densenet", &a, &c, &d))) densenet(&b, a, c, d, outputs);
    else if (!strcmp(spec, "sfcn")) sfcn(&b, classes > 0 ? classes : 40);
    else return 0;
    *status = b.status;
    if (b.status) nfv_arch_free(out);
    return 1;
}
