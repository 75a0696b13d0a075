/* Sequential 3D CNN models: layers, parameters, forward/backward, files
 * (src/model/model.c, model_run.c, model_io.c).
 *
 * A model is a plain list of layers, each the counterpart of one module of a
 * PyTorch nn.Sequential: layer i has index i, and its parameters are named
 * "i.weight", "i.bias", "i.running_mean", ... in the model file, exactly as in
 * that nn.Sequential's state_dict().  Shapes are per sample unless stated:
 * activations are (N, C, D, H, W) after Conv/Pool/BN/activations and (N, F)
 * after Flatten/Linear.  The model's tensors live on the device of the
 * context that created or loaded it; pass that same context to every call.
 *
 * Architecture spec (src/model/model_spec.c): words separated by spaces, e.g.
 *   "conv(8,k3,p1) bn relu maxpool(2) conv(16,k3,s2,p1,nobias) elu(1.0)
 *    avgpool(2,2) gap flatten dropout(0.5) linear(3)"
 *   conv(C[,kK|kKdxKhxKw][,sS][,pP][,nobias])  Conv3d to C channels (k3 s1 p0)
 *   maxpool(K[,S][,P]) avgpool(K[,S][,P])      S defaults to K, P to 0
 *   bn[(eps)]  relu  lrelu(slope)  elu(alpha)  dropout(p)  flatten
 *   gap                                        AdaptiveAvgPool3d(1): (C,1,1,1)
 *   linear(F[,nobias])                         Linear to F features
 * Presets: "ref4" (docs/ARCHITECTURE.md, the reference model), "ref4-gap"
 * (ref4's convs, conv4 without its pool, then gap flatten linear: the same
 * evidence wherever it is) and "notebook" (the authors' notebook model).
 * nfv_arch_print() gives back a canonical spec that parses to the same list. */
#ifndef NEUROFV_MODEL_H
#define NEUROFV_MODEL_H

#include "neurofv/ops.h"
#include "neurofv/safetensors.h"
#include "neurofv/tensor.h"
#include "neurofv/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nfv_layer_kind {
    NFV_LAYER_CONV3D = 0,
    NFV_LAYER_MAXPOOL3D,
    NFV_LAYER_AVGPOOL3D,
    NFV_LAYER_BATCHNORM3D,
    NFV_LAYER_RELU,
    NFV_LAYER_LEAKY_RELU,
    NFV_LAYER_ELU,
    NFV_LAYER_DROPOUT,
    NFV_LAYER_FLATTEN,
    NFV_LAYER_LINEAR,
    NFV_LAYER_GAP,           /* global average pool: (C, D, H, W) -> (C, 1, 1, 1) */
    /* Graph ops (ONNX import, residual and dense presets). */
    NFV_LAYER_ADD,           /* sum of its inputs (all the same shape) */
    NFV_LAYER_CONCAT,        /* inputs joined along the channel axis: (C1 + C2 + ..., D, H, W) or (F1 + F2 + ...) */
    NFV_LAYER_PAD,           /* constant pad: padding[] before, pad_end[] after each of (d, h, w), value alpha */
    NFV_LAYER_GMP,           /* global max pool: (C, D, H, W) -> (C, 1, 1, 1) */
    NFV_LAYER_INSTANCENORM,  /* InstanceNorm3d, affine gamma/beta (C), eps alpha */
    NFV_LAYER_SIGMOID,
    NFV_LAYER_SOFTMAX,       /* over the channel axis */
    NFV_LAYER_LOGSOFTMAX,    /* over the channel axis */
    NFV_LAYER_IDENTITY,      /* y = x (a view) */
    NFV_LAYER_RESHAPE,       /* per-sample shape reshape[0..reshape_ndim) (1 or 4 dims), same numel: a view */
    NFV_LAYER_CONSTANT,      /* no input; output = its tensor "value" (1 or N samples of shape reshape[]), no gradient */
    NFV_LAYER_KIND_COUNT
} nfv_layer_kind;

/* Graph limits: inputs of one node, characters of node and parameter names. */
#define NFV_NODE_MAX_INPUTS 32
#define NFV_NODE_NAME_MAX 64
#define NFV_PARAM_NAME_MAX 96
#define NFV_NODE_MAX_TENSORS 4   /* parameters + buffers of one node (BN: weight, bias, running mean, var) */
#define NFV_INPUT_NODE (-1)      /* an input index meaning the model's input */

/* What the spec says about one layer (the hyper-parameters, no weights). */
typedef struct nfv_layer_spec {
    nfv_layer_kind kind;
    int features;            /* Conv3d: output channels; Linear: output features */
    int kernel[3], stride[3], padding[3]; /* Conv3d and pools (d, h, w) */
    int bias;                /* Conv3d / Linear: 1 = has a bias */
    float alpha;             /* LeakyReLU slope, ELU alpha, Dropout p, BatchNorm/InstanceNorm eps, Pad value */
    int dilation[3];         /* Conv3d; 0 means 1 */
    int groups;              /* Conv3d; 0 means 1 */
    int pad_end[3];          /* Pad: voxels after each axis (padding[] is before) */
    int ceil_mode;           /* pools: PyTorch ceil_mode */
    int exclude_pad;         /* avgpool: count_include_pad=False */
    int reshape_ndim, reshape[4]; /* Reshape: per-sample output shape */

    /* Graph wiring.  n_inputs = 0: the one input is the previous node's
     * output (the model input for node 0), i.e. a sequential model.  Else
     * inputs[] are node indices (earlier nodes) or NFV_INPUT_NODE. */
    int n_inputs;
    int inputs[NFV_NODE_MAX_INPUTS];
    /* Name of the node's output ("" = the default "conv1", "relu3", ...):
     * what targets and `inspect` call it. */
    char name[NFV_NODE_NAME_MAX];
    /* Names of the node's tensors in the model file: parameters then buffers
     * (Conv/Linear: weight[, bias]; BatchNorm: weight, bias, running_mean,
     * running_var; InstanceNorm: weight, bias).  "" = "<index>.weight", ...
     * (the nn.Sequential state_dict names). */
    char tensor_names[NFV_NODE_MAX_TENSORS][NFV_PARAM_NAME_MAX];
} nfv_layer_spec;

typedef struct nfv_arch {
    nfv_layer_spec *layers;  /* malloc'ed */
    int count;
} nfv_arch;

/* Parse a spec or preset name ("ref4", "ref4-gap", "notebook"); out->layers is malloc'ed.
 * Errors name the offending word and its position.  classes fills the
 * features of a final "linear" written without a size ("linear(classes)" in
 * presets); pass 0 when the spec gives every size. */
nfv_status nfv_arch_parse(const char *spec, int classes, nfv_arch *out);
/* Canonical spec text into buf (cap bytes); returns buf. */
const char *nfv_arch_print(const nfv_arch *arch, char *buf, size_t cap);
void nfv_arch_free(nfv_arch *arch);
/* Default input shape (C, D, H, W) and voxel size of a preset ("ref4"
 * and "ref4-gap": 1x91x109x91 at 2 mm; "notebook": 1x96x114x96 at 2 mm, i.e. the 2 mm MNI grid padded); 0 if spec is not a preset. */
int nfv_arch_preset_input(const char *spec, int input_shape[4], double voxel_mm[3]);

/* Whether spec builds on input (C, D, H, W) without allocating anything:
 * the spec parses (outputs fills linear(classes); 0: the spec must give
 * every size), every layer fits its input, and the sizes are ones a
 * device can hold: at most 2^30 input values and 2^30 values of any layer's
 * output per sample, at most 2^31 parameters in all.  Errors name the word
 * or layer.  model_outputs (may be NULL) receives the outputs per sample of
 * the last layer. */
nfv_status nfv_arch_check(const char *spec, const int input_shape[4], int outputs, int *model_outputs);

typedef enum nfv_head {
    NFV_HEAD_SOFTMAX = 0,    /* K >= 2 logits, cross-entropy */
    NFV_HEAD_BINARY,         /* 1 logit, binary cross-entropy with logits; class 1 = positive */
    NFV_HEAD_REGRESSION      /* 1 output, mean squared error */
} nfv_head;
const char *nfv_head_name(nfv_head h);                 /* "softmax", "binary", "regression" */
nfv_status nfv_head_parse(const char *s, nfv_head *out);

#define NFV_LAYER_MAX_PARAMS 2

/* One layer of a model.  The runtime tensors are (re)allocated by
 * nfv_model_set_batch and hold the last forward/backward pass. */
typedef struct nfv_layer {
    nfv_layer_spec spec;
    int index;               /* = PyTorch nn.Sequential index */
    char name[NFV_NODE_NAME_MAX]; /* "conv1", "bn1", ... or the spec's / ONNX node's name */
    int n_inputs, inputs[NFV_NODE_MAX_INPUTS]; /* resolved wiring: node indices or NFV_INPUT_NODE */
    int consumers;           /* nodes reading this output */
    int computed;            /* 1: out holds this node's output of the last forward */
    int in_place;            /* Add writing into its first input's buffer (that input feeds nothing else;
                              * its activation is gone after the Add ran: nfv_model_activation gives NULL) */
    nfv_tensor dout;         /* graph models: gradient of out for backward (allocated with the batch) */
    int in_ndim, in_shape[4];   /* per sample: (C, D, H, W) or (F) */
    int out_ndim, out_shape[4]; /* per sample: (C, D, H, W) or (F) */

    /* Trainable parameters: Conv3d weight (Co, Ci, kd, kh, kw) + bias (Co);
     * Linear weight (Out, In) + bias (Out); BatchNorm3d weight = gamma (C) +
     * bias = beta (C).  nparams of them; grad/opt_m/opt_v have the same shapes
     * (opt_m: Adam m or SGD velocity; opt_v: Adam v; allocated on first use). */
    int nparams;
    nfv_tensor param[NFV_LAYER_MAX_PARAMS];
    nfv_tensor grad[NFV_LAYER_MAX_PARAMS];
    nfv_tensor opt_m[NFV_LAYER_MAX_PARAMS];
    nfv_tensor opt_v[NFV_LAYER_MAX_PARAMS];
    /* BatchNorm3d buffers (C), momentum 0.1 as PyTorch. */
    nfv_tensor running_mean, running_var;
    long long num_batches_tracked;

    nfv_tensor constant;     /* Constant: its value (1 or N samples of out_shape) */
    /* Runtime (batch N): out (N, out_shape); aux = maxpool / global max pool
     * argmax, dropout mask, BN save_mean (C), InstanceNorm save_mean (N, C);
     * aux2 = BN save_invstd (C), InstanceNorm save_invstd (N, C). */
    nfv_tensor out, aux, aux2;

    /* Eval-mode fusion (src/model/model_fuse.c).  keep: this output must
     * exist after a forward (nfv_model_keep_activation), so it is never
     * fused away.  fused_with: in the last forward, this layer's output was
     * computed together with the fused_with layers before it (conv ->
     * BatchNorm [-> ReLU [-> max pool]], or conv -> ReLU), whose own outputs
     * were not; 0: not fused.
     * fold_w, fold_b: a conv's weights and bias with the BatchNorm after it
     * folded in (allocated on first use); fold_generation: the context's
     * nfv_context_frozen_generation when they were folded (0: fold again). */
    int keep, fused_with;
    /* Training: in the last forward this ReLU's output was computed by the
     * BatchNorm before it (nfv_batchnorm3d_relu_forward_train_dist), whose
     * own output was not; backward passes its gradient through to the
     * BatchNorm's, which gates it (nfv_batchnorm3d_relu_backward_train_dist). */
    int relu_in_bn;
    nfv_tensor fold_w, fold_b;
    unsigned long fold_generation;
} nfv_layer;

typedef struct nfv_model {
    nfv_layer *layers;
    int layer_count;
    nfv_arch arch;           /* parsed spec */
    char *arch_spec;         /* canonical spec text, or the JSON graph (model_graph.c) */
    char arch_label[96];     /* for messages: the spec, or "graph of N nodes" */

    int input_shape[4];      /* (C, D, H, W) per sample */
    double voxel_mm[3];
    double affine[4][4];     /* voxel (i, j, k) -> world mm of the model grid (as nibabel) */
    nfv_norm_method norm;
    nfv_head head;
    char **class_names;      /* class_count names (class index order); regression: 0 */
    int class_count;
    /* Regression heads: the network is trained on standardized targets
     * (y - target_mean) / target_sd (mean and population SD of the train
     * split), so the last layer's raw output z is in SD units and the
     * prediction in the label's units is target_mean + target_sd * z.  That
     * de-standardization happens in nfv_model_predict (and so
     * nfv_model_predict_rows, eval, validation) and nowhere else: forward
     * activations, visualization objectives and training steps see z.  Model
     * file metadata "target_mean", "target_sd"; files without them load as
     * 0 and 1 (z is the prediction). */
    double target_mean, target_sd;
    /* MACO (--param maco, src/vis/maco.c): the training cohort's mean
     * amplitude spectrum on the model grid, (D, H, W) host floats in the
     * orthonormal DFT's units (|F(k)| of the preprocessed volumes, averaged),
     * and the intensity range [spectrum_lo, spectrum_hi] the decoded image is
     * mapped into (the mean of the volumes' minima and maxima).  NULL = none
     * (`neurofv spectrum` adds it).  File: tensor "maco.amplitude" (D, H, W)
     * and metadata "maco_range" = "lo,hi", "maco_subjects" = the count. */
    float *spectrum;
    float spectrum_lo, spectrum_hi;
    int spectrum_subjects;

    int batch;               /* N the runtime tensors are allocated for; 0 = none */
    unsigned long long dropout_seed; /* advanced by every training forward */
    /* Data-parallel training (nfv_trainer_step_dist): this rank's part of the
     * global batch, for BatchNorm's synchronized statistics and dropout's
     * global element indices; NULL: this process holds the whole batch. */
    const nfv_dist_batch *dist;
    const nfv_tensor *last_input;    /* x of the last forward (not owned) */
    int last_forward_upto;           /* last layer the last forward computed */
    int last_training;
    int is_graph;            /* 0: a chain (each layer reads the previous one), run with the ping-pong buffers */
    int fuse_eval;           /* 1: eval-mode forwards fuse conv -> BN [-> ReLU], conv -> ReLU (nfv_model_set_fusion) */
    int train_unfused;       /* 1: training forwards run BN -> ReLU as two layers (tests compare both) */
    /* Scratch gradient buffers (ping-pong), each the largest activation of the batch. */
    nfv_tensor grad_a, grad_b;
    nfv_context *ctx;
} nfv_model;

/* Build a model from a spec (or preset) for input (C, D, H, W), parameters
 * initialized as PyTorch's defaults: Conv3d/Linear weight and bias
 * kaiming-uniform, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm gamma 1,
 * beta 0, running mean 0 / var 1; from a seeded host RNG (the same seed gives
 * the same model on any device).  The head is binary when the last Linear has
 * 1 output (regression if head is given as NFV_HEAD_REGRESSION), else softmax.
 * class_names may be NULL (then "0", "1", ...).  Metadata defaults: voxel
 * 2 mm, affine: MNI-centred grid, norm zscore-nonzero; set the fields after. */
nfv_status nfv_model_create_from_spec(nfv_context *ctx, const char *spec, const int input_shape[4], int class_count,
                                      const char *const *class_names, nfv_head head, unsigned long long seed,
                                      nfv_model **out);
/* Load a .safetensors model (see the file header comment of src/model/safetensors.c):
 * every tensor's dtype, shape and byte range are checked against the file and
 * the architecture in __metadata__ before anything is read. */
nfv_status nfv_model_load(nfv_context *ctx, const char *path, nfv_model **out);
/* Save parameters + BN buffers + metadata; temp file then rename(). */
nfv_status nfv_model_save(const nfv_model *m, const char *path);
void nfv_model_free(nfv_model *m);
/* The pieces of load/save, for files that carry more than the model
 * (training checkpoints add optimizer state): add every model tensor and the
 * metadata to w; build a model from an already validated file (tensors it does
 * not know are an error unless their name starts with ignore_prefix). */
nfv_status nfv_model_to_writer(const nfv_model *m, nfv_st_writer *w);

/* A model from an ONNX graph read by nfv_onnx_read (neurofv/onnx.h): the
 * graph's nodes, its initializers as parameters under their ONNX names.
 * Metadata defaults as nfv_model_create_from_spec (head from the outputs:
 * 1 -> binary, else softmax); set them after. */
struct nfv_onnx_graph;
nfv_status nfv_model_from_onnx(nfv_context *ctx, const struct nfv_onnx_graph *g, nfv_model **out);
/* nfv_model_load for a .safetensors file, or read + nfv_model_from_onnx for
 * a path ending in ".onnx" (so every --model takes either). */
nfv_status nfv_model_open(nfv_context *ctx, const char *path, nfv_model **out);
nfv_status nfv_model_from_file(nfv_context *ctx, const nfv_st_file *f, const char *ignore_prefix, nfv_model **out);

/* Metadata setters for imported models: the default centred RAS grid at
 * m->voxel_mm; class names (count of them; NULL or a NULL entry: "0", "1",
 * ...) replacing the current ones. */
void nfv_model_default_grid(nfv_model *m);
nfv_status nfv_model_replace_classes(nfv_model *m, int count, const char *const *names);
/* One eval-mode forward of a zero input (batch 1): a model that loads but
 * cannot run is refused before it is saved or used. */
nfv_status nfv_model_check_runs(nfv_model *m, nfv_context *ctx);

/* Layer index by name ("conv3"), by index ("7"), or "logits"/"output" for the
 * last layer; -1 with an error message naming the available layers if absent. */
int nfv_model_find_layer(const nfv_model *m, const char *name);
const nfv_layer *nfv_model_layer(const nfv_model *m, int index);
/* The node holding the logits: the output node, or the input of a final
 * Softmax / LogSoftmax (SFCN ends in log_softmax; feature visualization
 * maximizes the logit, not the probability), past trailing views. */
int nfv_model_logit_layer(const nfv_model *m);

/* mark[i] = 1 for node and every node it depends on (mark, layer_count
 * bytes, zeroed by the caller). */
void nfv_model_mark_ancestors(const nfv_model *m, int node, unsigned char *mark);

/* Totals per sample. */
int nfv_model_outputs(const nfv_model *m);    /* outputs of the last layer (logits / value) */
long long nfv_model_param_count(const nfv_model *m);
long long nfv_layer_param_count(const nfv_layer *l);
double nfv_layer_flops(const nfv_layer *l);   /* forward multiply-adds x 2 per sample */

/* Allocate the runtime tensors for batch N (no-op if already N). */
nfv_status nfv_model_set_batch(nfv_model *m, nfv_context *ctx, int n);

/* Run layers 0..upto_layer (inclusive; -1 = all) on x (N, C, D, H, W) with
 * N = the batch set (set automatically when it differs).  training != 0: BN
 * uses batch statistics and updates running stats, Dropout draws a mask.
 * Activations are kept per layer; x must stay alive until backward. */
nfv_status nfv_model_forward(nfv_model *m, nfv_context *ctx, const nfv_tensor *x, int upto_layer, int training);
/* Output of layer i of the last forward: (N, out_shape) or NULL (not
 * computed, or fused away: see nfv_model_set_fusion). */
nfv_tensor *nfv_model_activation(nfv_model *m, int layer);

/* Eval-mode fusion, off by default.  When on, an eval forward runs each
 * conv -> BatchNorm [-> ReLU [-> max pool 2]] run of layers (each read only
 * by the next) as one conv with the BatchNorm folded into its weights and
 * the ReLU (and the pool) applied as it stores; backward gates the gradient
 * by that ReLU in the conv's padding copy, or, after a pool, writes it from
 * the pool's backward straight into that copy.  For ref4 that removes most
 * passes over the full-resolution activations (46.5 -> ~30 ms per
 * visualization step on a 2-core CPU).  A conv -> ReLU with no BatchNorm
 * between (as PyTorch's ONNX export leaves them) runs the same way.  The
 * conv's and BatchNorm's own outputs then do not exist (nfv_model_activation
 * gives NULL and backward cannot start or stop there) unless the layer was
 * pinned with nfv_model_keep_activation.  A group ends at or before the
 * forward's upto_layer, so the requested layer always exists.  Results
 * equal the unfused ones up to float rounding (tests/test_fuse.c). */
void nfv_model_set_fusion(nfv_model *m, int on);
void nfv_model_keep_activation(nfv_model *m, int layer);

/* Backpropagate from the output of layer from_layer (<= the last forward's
 * upto) given grad_at_from_layer_output (same shape as that activation) down
 * to layer 0.  param_grads != 0: each layer's grad[] is overwritten with the
 * gradient of this batch (training); 0: no parameter gradients
 * (visualization).  dx (N, C, D, H, W) receives the input gradient, or NULL to
 * skip it (the first layer then computes nothing it need not).  BatchNorm and
 * Dropout use the mode of the last forward (eval: BN's running statistics,
 * Dropout identity). */
nfv_status nfv_model_backward(nfv_model *m, nfv_context *ctx, int from_layer, const nfv_tensor *grad_at_from_layer_output,
                              int param_grads, nfv_tensor *dx);

/* The gradient of the output of layer to_layer (from_layer itself or a
 * layer before it) given grad_at_from_layer_output: backward from from_layer
 * stopping there, no parameter gradients, into dact (N, out_shape of
 * to_layer).  A layer from_layer does not depend on gets 0.  Grad-CAM
 * weights a layer's channels by this gradient's spatial mean. */
nfv_status nfv_model_backward_to_layer(nfv_model *m, nfv_context *ctx, int from_layer, const nfv_tensor *g,
                                       int to_layer, nfv_tensor *dact);

/* Predicted class of one output row (softmax: argmax; binary: logit > 0). */
int nfv_model_predict_class(const nfv_model *m, const float *output_row);

/* ---- Device memory (src/model/memory.c) ----------------------------------
 *
 * What a run will allocate on the device, counted from the same shapes and
 * rules as the allocations themselves (nfv_tensor_create's 64 floats of
 * slack included), so a run that does not fit is refused before it starts
 * instead of failing inside a kernel.  Scratch slots that grow are counted
 * at their largest; buffers that live for one call (BatchNorm's partial
 * sums) at the largest one. */
typedef enum nfv_memory_part {
    NFV_MEM_WEIGHTS = 0,   /* parameters and BatchNorm running statistics */
    NFV_MEM_GRADIENTS,     /* parameter gradients (allocated with the parameters) */
    NFV_MEM_OPTIMIZER,     /* Adam m and v, or SGD velocity */
    NFV_MEM_ACTIVATIONS,   /* every layer's output and what backward keeps (argmax, masks, BN statistics) */
    NFV_MEM_BACKWARD,      /* the two ping-pong gradient buffers */
    NFV_MEM_BATCH,         /* the batch: training inputs and targets; a visualization's per-sample buffers */
    NFV_MEM_SCRATCH,       /* conv padded copies, flipped weights, partial sums; BN, Fourier, penalty scratch */
    NFV_MEM_PARTS
} nfv_memory_part;

typedef struct nfv_memory_estimate {
    unsigned long long part[NFV_MEM_PARTS]; /* bytes per part */
    unsigned long long total;               /* bytes, all parts */
    unsigned long long largest;             /* bytes of the largest single buffer */
    char largest_what[96];                  /* what that buffer is ("layer 0 (conv1) output, batch 8") */
} nfv_memory_estimate;

/* "weights", "gradients", ... */
const char *nfv_memory_part_name(nfv_memory_part p);
/* Device bytes of a tensor of numel floats (nfv_tensor_create adds 64 floats). */
unsigned long long nfv_tensor_bytes(size_t numel);
/* Adds one buffer of `bytes` to part p of e; what (printf format) names it
 * when it is the largest so far. */
void nfv_memory_add(nfv_memory_estimate *e, nfv_memory_part p, unsigned long long bytes, const char *what, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Adds what model m holds on ctx's device with batch n (the model need not
 * be on a device: a layout from nfv_arch_parse / model files counts the
 * same): parameters, gradients, BN buffers, activations and backward buffers
 * of nfv_model_set_batch, and the scratch of the layers run.  training != 0:
 * a training step (forward in training mode, backward from the last layer
 * with parameter gradients, no input gradient); 0: a visualization step
 * (forward up to upto_layer in eval mode, backward from it to the input). */
void nfv_model_memory(const nfv_model *m, const nfv_context *ctx, int n, int upto_layer, int training,
                      nfv_memory_estimate *e);

/* Whether e fits ctx's device (nfv_context_device_memory): the total within
 * its global memory, the largest buffer within its per-buffer limit. */
int nfv_memory_fits(const nfv_context *ctx, const nfv_memory_estimate *e);

/* The estimate of a run with batch b (filled from zero by the callee). */
typedef void (*nfv_memory_fn)(void *user, int batch, nfv_memory_estimate *e);

/* The largest batch in [1, max] whose estimate fits (0: not even 1);
 * estimates grow with the batch. */
int nfv_memory_largest_batch(const nfv_context *ctx, nfv_memory_fn fn, void *user, int max);

/* Checks a run of batch `batch` against ctx's device before it starts.  It
 * fits: *chosen = batch.  It does not and auto_batch is set: *chosen = the
 * largest batch that fits, when there is one.  Else NFV_ERR_UNSUPPORTED with
 * the numbers, e.g. "[<what>: ]batch 8 needs 1530.2 MiB of device memory
 * (weights 0.4, ..., scratch 96.1 MiB) but <device> has 1024.0 MiB; the
 * largest batch that fits is 5 (980.3 MiB): use --batch 5", or the largest
 * buffer and the device's per-buffer limit when that is what does not fit.
 * what may be NULL. */
nfv_status nfv_memory_check_batch(const nfv_context *ctx, const char *what, nfv_memory_fn fn, void *user, int batch,
                                  int auto_batch, int *chosen);

/* "weights 0.4, gradients 0.4, ..., scratch 96.1" (MiB, the parts that are not 0) into buf. */
const char *nfv_memory_parts_text(const nfv_memory_estimate *e, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
