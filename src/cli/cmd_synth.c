/* `neurofv synth`: build a synthetic cohort from the Colin27 template. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "neurofv/synth.h"
#include "base/clock.h"

NFV_COMMAND(synth, "synth", "Build a synthetic cohort (planted lesions, morphometry or brain age) from a template")

/* The age model as --help states it (keep in step with include/neurofv/synth.h). */
#define AGE_HELP \
    "\n\n--task age: label = age in years (one decimal), stratified uniform in [20, 85]; split stratified " \
    "by age (groups of 20 consecutive ages).  The template is the anatomy at biological age 20.  Each " \
    "subject's anatomy follows its biological age b = clip(age + gap, 15, 95), gap ~ N(0, 5^2) clipped " \
    "to +-10 years (so a perfect model still errs by ~4 years MAE), and a ventricle factor F = exp(N(0, " \
    "0.2^2)) clipped to +-0.4 in the exponent.  With t = b - 20, h = max(0, b - 60):\n  ventricles  " \
    "volume ratio R(b) = 1 + 0.02 t + 0.0006 h^2 (1.80 at 60, 2.68 at 85), times F: a smooth outward " \
    "flow (velocity = gradient of the ventricle mask smoothed by 6 mm, 8 Euler steps) whose amplitude is " \
    "calibrated on the template; ventricles = template voxels darker than the CSF class centre (3-class " \
    "k-means) inside the MNI box x -28..28, y -50..35, z -5..35 mm\n  tissue      loss L(b) = 0.002 t + " \
    "0.00006 h^2 (0.2 %/year before 60, 0.5 %/year at 85, 16.8 % at 85): half as a global contraction " \
    "about (0, -18, 18) mm (volume x (1 - L/2)), half as CSF partial volume in the cortical band (brain " \
    "edge, weight w = clamp(2 (1 - G5mm*mask), 0, 1)): I -= c w (I - CSF), c = L / (2 mean w)\n  contrast " \
    "   above the GM level I -= C (I - GM), C(b) = 0.003 t (WM-GM contrast -19.5 % at 85)\nthen the " \
    "subject's random affine, deformation, bias and noise as for the other tasks.  age_effect.nii.gz: " \
    "(I(85) - I(20)) / 65 of the model alone (gap 0, F = 1, no subject variation or noise) on the grid, " \
    "in the subjects' units per year; negative = darker with age."

static void on_progress(void *user, int done, int total)
{
    cli_progress_update((cli_progress *)user, done, total, "subjects");
}

/* "A,B" with lo <= A <= B <= hi. */
static int parse_range(const char *s, double lo, double hi, double out[2])
{
    double a, b;
    char tail;
    if (sscanf(s, "%lf,%lf%c", &a, &b, &tail) != 2 || !(a >= lo) || !(b <= hi) || !(a <= b)) return 0;
    out[0] = a;
    out[1] = b;
    return 1;
}

/* Every option beyond its type, before the cohort directory is created;
 * 0 or the exit code. */
static int check_options(nfv_synth_options *o, const char *task, const char *split, const char *shape,
                         const char *lesion_size, const char *lesion_intensity)
{
    if (!strcmp(task, "lesion")) o->task = NFV_SYNTH_LESION;
    else if (!strcmp(task, "morph")) o->task = NFV_SYNTH_MORPH;
    else if (!strcmp(task, "age")) o->task = NFV_SYNTH_AGE;
    else return cli_failf("synth", "--task must be lesion, morph or age, got \"%s\"", task);
    if (o->task == NFV_SYNTH_AGE && (o->shapes || o->no_lesion_class || o->match_volume || lesion_size || lesion_intensity))
        return cli_failf("synth", "--shapes, --no-lesion-class, --match-volume, --lesion-size and --lesion-intensity are for "
                                  "--task lesion, not --task age");
    if (o->n < 1 || o->n > 1000000) return cli_failf("synth", "--n expects 1..1000000 subjects, got %d", o->n);
    if (o->shapes && !o->shapes[0]) return cli_failf("synth", "--shapes needs at least one shape");
    if (lesion_size && !parse_range(lesion_size, 1.0, 200.0, o->lesion_size_mm))
        return cli_failf("synth", "--lesion-size expects MIN,MAX mm with 1 <= MIN <= MAX <= 200, got \"%s\"",
                         lesion_size);
    if (lesion_intensity && !parse_range(lesion_intensity, 0.0, 5.0, o->lesion_intensity))
        return cli_failf("synth", "--lesion-intensity expects MIN,MAX with 0 <= MIN <= MAX <= 5, got \"%s\"",
                         lesion_intensity);
    if (!(o->voxel_mm >= 0.25 && o->voxel_mm <= 20))
        return cli_failf("synth", "--voxel expects a size in mm in 0.25..20, got %g", o->voxel_mm);
    if (shape) {
        char tail;
        int *n = o->shape;
        if (sscanf(shape, "%d,%d,%d%c", &n[0], &n[1], &n[2], &tail) != 3 || n[0] < 4 || n[1] < 4 || n[2] < 4 ||
            n[0] > 2048 || n[1] > 2048 || n[2] > 2048)
            return cli_failf("synth", "--shape expects X,Y,Z voxels, each 4..2048, got \"%s\"", shape);
    }
    if (o->threads < 0) return cli_failf("synth", "--threads must be >= 0 (0: all CPUs), got %d", o->threads);
    nfv_status s = nfv_synth_split_parse(split, o->split);
    if (s) return cli_fail("synth", nfv_fail_context(s, "--split"));
    return 0;
}

int cmd_synth(int argc, char **argv)
{
    nfv_synth_options o;
    nfv_synth_options_default(&o);
    const char *task = "lesion", *split = "70/15/15", *shape = NULL, *out = NULL;
    float voxel = 2.0f;
    int no_lesion = 0;
    const char *lesion_size = NULL, *lesion_intensity = NULL;
    const cli_option opts[] = {
        {"--task", CLI_STRING, &task, "lesion|morph|age", "lesion: lesions of K shapes, label = shape; morph: control "
                                                          "vs atrophy (global -3 %, hippocampal atrophy); age: label "
                                                          "= age 20-85, ageing anatomy (above) (default lesion)"},
        {"--n", CLI_INT, &o.n, "N", "number of subjects (default 600)"},
        {"--shapes", CLI_STRING, &o.shapes, "LIST", "lesion shapes, comma-separated, from sphere,cube,cross,cylinder,"
                                                    "pyramid,torus (default sphere,cube,cross)"},
        {"--no-lesion-class", CLI_FLAG, &no_lesion, NULL, "add a class \"none\" without lesion"},
        {"--lesion-size", CLI_STRING, &lesion_size, "MIN,MAX", "lesion size range in mm (default 16,22)"},
        {"--match-volume", CLI_FLAG, &o.match_volume, NULL,
         "scale each shape so its lesions have the volume of spheres of --lesion-size: the classes then differ in "
         "shape only, not in the amount of lesion (without it a cube is 1.9x a sphere's volume and 3.4x a cross's, "
         "and a model can tell them apart by volume alone)"},
        {"--lesion-intensity", CLI_STRING, &lesion_intensity, "MIN,MAX",
         "lesion intensity as a multiple of white matter: >1 bright, <1 dark (default 1.5,1.8)"},
        {"--voxel", CLI_FLOAT, &voxel, "MM", "isotropic voxel size (default 2: 91x109x91 MNI grid)"},
        {"--shape", CLI_STRING, &shape, "X,Y,Z", "grid size in voxels (default: the MNI box at --voxel)"},
        {"--seed", CLI_U64, &o.seed, "S", "random seed; the same seed gives the same bytes (default 1)"},
        {"--split", CLI_STRING, &split, "A/B/C",
         "train/val/test percentages, stratified by label (age: by groups of 20 consecutive ages) (default 70/15/15)"},
        {"--template", CLI_STRING, &o.template_path, "FILE",
         "brain-extracted T1 template (default " NFV_DEFAULT_TEMPLATE ")"},
        {"--threads", CLI_INT, &o.threads, "N", "worker threads (default: all CPUs)"},
        {"--out", CLI_STRING, &out, "DIR", "output directory (required)"},
        {0}};
    int r = cli_parse("synth", "--out DIR [options]",
                      "Write a cohort under DIR: labels.csv (path,label,split), sub-XXXX.nii.gz, mask.nii.gz, "
                      "template.nii.gz, cohort.json, for --task lesion shapes/<shape>.nii.gz and "
                      "lesion_masks/sub-XXXX.nii.gz, for --task age age_effect.nii.gz. "
                      "Each subject is the template under a small random affine and smooth deformation, with a "
                      "bias field and noise.  Grid: RAS, sform code 4 (MNI)." AGE_HELP,
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    if (!out) return cli_failf("synth", "--out DIR is required (see neurofv synth --help)");
    o.out_dir = out;
    o.no_lesion_class = no_lesion;
    o.voxel_mm = voxel;
    if ((r = check_options(&o, task, split, shape, lesion_size, lesion_intensity))) return r;
    cli_progress p;
    cli_progress_start(&p, "synth");
    o.progress = on_progress;
    o.progress_user = &p;
    double t0 = nfv_seconds();
    nfv_status s = nfv_synth_run(&o);
    cli_progress_end(&p);
    if (s) return cli_fail("synth", s);
    fprintf(stderr, "synth: %d subjects in %s (%.1f s)\n", o.n, out, nfv_seconds() - t0);
    return 0;
}
