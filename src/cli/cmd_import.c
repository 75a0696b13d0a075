/* `neurofv import`: an ONNX model (torch.onnx.export, MONAI's
 * convert_to_onnx) into neurofv's model file, with the metadata ONNX does
 * not carry: the grid's voxel size and affine, the intensity normalization,
 * the head and the class names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "neurofv/model.h"
#include "neurofv/onnx.h"

NFV_COMMAND(import, "import", "Convert an ONNX model (PyTorch/MONAI export) into a neurofv model file")

/* "a,b,c" into a malloc'ed array of count strings (pointing into a copy). */
static char **split_names(const char *list, int *count, char **storage)
{
    *storage = strdup(list);
    int cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    char **names = calloc((size_t)cap, sizeof *names);
    if (!*storage || !names) {
        free(names);
        return NULL;
    }
    *count = 0;
    for (char *tok = strtok(*storage, ","); tok; tok = strtok(NULL, ",")) names[(*count)++] = tok;
    return names;
}

/* The model grid from --template: its affine and voxel size, when its grid
 * is the model input's. */
static nfv_status grid_from_template(nfv_model *m, const char *path)
{
    nfv_volume v;
    memset(&v, 0, sizeof v);
    NFV_TRY(nfv_volume_read(path, &v, NULL));
    nfv_status s = NFV_OK;
    if (v.nx != m->input_shape[3] || v.ny != m->input_shape[2] || v.nz != m->input_shape[1])
        s = nfv_fail(NFV_ERR_INVALID_ARG,
                     "%s is %dx%dx%d (x, y, z) but the model takes %dx%dx%d: give a template on the model's grid, "
                     "or --voxel (and --affine)",
                     path, v.nx, v.ny, v.nz, m->input_shape[3], m->input_shape[2], m->input_shape[1]);
    for (int r = 0; !s && r < 4; r++)
        for (int c = 0; c < 4; c++) m->affine[r][c] = v.affine[r][c];
    for (int a = 0; !s && a < 3; a++)
        m->voxel_mm[a] = sqrt(v.affine[0][a] * v.affine[0][a] + v.affine[1][a] * v.affine[1][a] +
                              v.affine[2][a] * v.affine[2][a]);
    nfv_volume_free(&v);
    return s;
}

static nfv_status parse_affine(const char *text, double a[4][4])
{
    const char *p = text;
    for (int i = 0; i < 16; i++) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v)) return nfv_fail(NFV_ERR_INVALID_ARG, "--affine needs 16 numbers (row-major 4x4)");
        a[i / 4][i % 4] = v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    if (*p) return nfv_fail(NFV_ERR_INVALID_ARG, "--affine: more than 16 numbers");
    return NFV_OK;
}

typedef struct import_opts {
    const char *out, *template_path, *affine, *norm, *classes, *head, *device;
    float voxel;
} import_opts;

/* Metadata the ONNX file lacks, from the options. */
static nfv_status apply_options(nfv_model *m, const import_opts *o)
{
    if (o->voxel > 0) {
        m->voxel_mm[0] = m->voxel_mm[1] = m->voxel_mm[2] = o->voxel;
        nfv_model_default_grid(m);
    }
    if (o->template_path) NFV_TRY(grid_from_template(m, o->template_path));
    if (o->affine) NFV_TRY(parse_affine(o->affine, m->affine));
    if (o->norm) NFV_TRY(nfv_norm_method_parse(o->norm, &m->norm));
    if (o->head) NFV_TRY(nfv_head_parse(o->head, &m->head));
    int k = nfv_model_outputs(m);
    if (m->head == NFV_HEAD_SOFTMAX && k < 2)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--head softmax needs 2 or more outputs; the model has %d", k);
    if (m->head != NFV_HEAD_SOFTMAX && k != 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--head %s needs 1 output; the model has %d", nfv_head_name(m->head), k);
    int count = m->head == NFV_HEAD_SOFTMAX ? k : m->head == NFV_HEAD_BINARY ? 2 : 0;
    char *storage = NULL;
    char **names = NULL;
    if (o->classes) {
        int given = 0;
        names = split_names(o->classes, &given, &storage);
        if (!names) return nfv_fail(NFV_ERR_NO_MEMORY, "import: out of memory");
        if (given != count) {
            free(names), free(storage);
            return nfv_fail(NFV_ERR_INVALID_ARG, "--classes gives %d names; a %s head with %d outputs has %d classes",
                            given, nfv_head_name(m->head), k, count);
        }
    }
    nfv_status s = nfv_model_replace_classes(m, count, (const char *const *)names);
    free(names), free(storage);
    return s;
}

int cmd_import(int argc, char **argv)
{
    import_opts o = {0};
    const cli_option opts[] = {
        {"--out", CLI_STRING, &o.out, "MODEL", "neurofv model file to write (.safetensors, required)"},
        {"--voxel", CLI_FLOAT, &o.voxel, "MM", "voxel size of the model grid (default 2; centred RAS grid)"},
        {"--template", CLI_STRING, &o.template_path, "NIFTI", "take the grid's affine and voxel size from this volume"},
        {"--affine", CLI_STRING, &o.affine, "16 NUMBERS", "voxel -> world mm of the model grid, row-major"},
        {"--norm", CLI_STRING, &o.norm, "METHOD", "intensity normalization the model was trained with"},
        {"--classes", CLI_STRING, &o.classes, "A,B,...", "class names in output order"},
        {"--head", CLI_STRING, &o.head, "HEAD", "softmax|binary|regression (default: binary for 1 output, else softmax)"},
        {"--device", CLI_STRING, &o.device, "DEV", "OpenCL device (see neurofv devices)"},
        {0},
    };
    const char *pos[1];
    int npos = 0;
    int r = cli_parse("import", "MODEL.onnx --out MODEL.safetensors [--voxel MM | --template NIFTI] [--norm METHOD] "
                                "[--classes a,b,c] [--head HEAD]",
                      "Read an ONNX file (opsets 9-17, float32 weights, as torch.onnx.export writes them), check "
                      "every node and weight, run it once, and write a neurofv model: the graph with readable node "
                      "names (\"/layer1/layer1.0/conv1/Conv\" -> \"layer1.0.conv1\", usable in targets) and the weights "
                      "under their ONNX names.  ONNX does not record the input grid in millimetres: give --voxel or a "
                      "--template on the model's grid, and the --norm the model was trained with.  Every command "
                      "that takes --model also reads the .onnx file directly, with these defaults.",
                      opts, argc, argv, pos, 1, &npos);
    if (r) return r == 1 ? 0 : 2;
    if (npos != 1 || !o.out) return cli_failf("import", "give MODEL.onnx and --out MODEL.safetensors (see --help)");
    if (o.voxel < 0 || (o.voxel > 0 && !(o.voxel < 100))) return cli_failf("import", "--voxel must be in (0, 100) mm");
    nfv_context *ctx = NULL;
    nfv_model *m = NULL;
    nfv_status s = nfv_context_create(o.device, &ctx);
    if (!s) s = nfv_model_open(ctx, pos[0], &m);
    if (!s) s = apply_options(m, &o);
    if (!s) s = nfv_model_check_runs(m, ctx);
    if (!s) s = nfv_model_save(m, o.out);
    if (!s)
        printf("%s: %d nodes, %lld parameters, input %dx%dx%dx%d at %gx%gx%g mm, %s head with %d outputs -> %s\n", pos[0],
               m->layer_count, nfv_model_param_count(m), m->input_shape[0], m->input_shape[1], m->input_shape[2],
               m->input_shape[3], m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2], nfv_head_name(m->head),
               nfv_model_outputs(m), o.out);
    nfv_model_free(m);
    nfv_context_free(ctx);
    return s ? cli_fail("import", s) : 0;
}
