/* Bad input, one clear line each, nothing left behind: dataset CSVs through
 * `neurofv train` and `neurofv eval` (train loads the CSV before anything,
 * eval right after the model whose head says how to read the labels;
 * both before any output), volumes that are bad only when a row is read, and the options of
 * train, eval and synth.  Legal but unusual CSVs (BOM, CRLF, quoted fields
 * with commas, other columns, any column order) and volumes (scaled
 * integers, LPS, oblique, 4-D) must be accepted.  Harness and fixture in
 * tests/test_bad_input.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "neurofv/volume.h"
#include "test.h"
#include "test_bad_input.h"

/* Writes bi_dir()/name with text; returns the path (static, rotating). */
static const char *csv_file(const char *name, const char *text)
{
    static char path[8][600];
    static int next;
    char *p = path[next++ % 8];
    bi_path(p, 600, name);
    CHECK(bi_write_text(p, text), "write %s", p);
    return p;
}

/* The CSV must be refused by train and by eval with one line that names
 * it (and whatever else names lists). */
static void both_refuse(const char *csv, const char *names)
{
    char out[600], pred[600], want[1400];
    bi_path(out, sizeof out, "data_model.safetensors");
    bi_path(pred, sizeof pred, "data_pred.csv");
    snprintf(want, sizeof want, "%s%s%s", csv, names ? "|" : "", names ? names : "");
    BI_REFUSED(want, out, "train --data '%s' --arch '%s' --shape 12,12,12 --epochs 1 --out '%s'", csv, BI_ARCH, out);
    BI_REFUSED(want, pred, "eval --model '%s' --data '%s' --split all --out '%s'", bi_model(), csv, pred);
}

TEST(bad_input_csv_corpus)
{
    if (!bi_good_volume()[0] || !bi_model()[0]) return;
    char p[600];
    both_refuse(bi_path(p, sizeof p, "missing.csv"), NULL);
    both_refuse(csv_file("empty.csv", ""), "empty");
    both_refuse(csv_file("blank.csv", "\n  \r\n\n"), "empty");
    both_refuse(csv_file("headerless.csv", "good.nii,a,train\ngood.nii,b,train\n"), "line 1|header");
    both_refuse(csv_file("no_label_column.csv", "path,class\ngood.nii,a\n"), "line 1|label");
    both_refuse(csv_file("header_only.csv", "path,label,split\n"), "no data rows");
    both_refuse(csv_file("missing_file.csv", "path,label\ngood.nii,a\nnope.nii,b\n"), "line 3|nope.nii");
    mkdir(bi_path(p, sizeof p, "a_directory.nii"), 0755);
    both_refuse(csv_file("directory_row.csv", "path,label\ngood.nii,a\na_directory.nii,b\n"), "line 3|a_directory");
    both_refuse(csv_file("one_class.csv", "path,label\ngood.nii,a\ngood.nii,a\ngood.nii,a\n"), "2 classes");
    both_refuse(csv_file("bad_split.csv", "path,label,split\ngood.nii,a,train\ngood.nii,b,train\ngood.nii,a,holdout\n"),
                "line 4|holdout");
    both_refuse(csv_file("split_all.csv", "path,label,split\ngood.nii,a,train\ngood.nii,b,all\n"), "line 3|all");
    both_refuse(csv_file("unterminated.csv", "path,label\ngood.nii,a\n\"good.nii,b\ngood.nii,a\n"),
                "line 3|unterminated");
    both_refuse(csv_file("after_quote.csv", "path,label\n\"good.nii\"x,a\ngood.nii,b\n"), "line 2");
    both_refuse(csv_file("short_row.csv", "label,split,path\na,train,good.nii\nb,train\n"), "line 3|field");
    both_refuse(csv_file("empty_path.csv", "path,label\ngood.nii,a\n  ,b\n"), "line 3|empty path");
    both_refuse(csv_file("empty_label.csv", "path,label\ngood.nii,a\ngood.nii,\n"), "line 3|empty label");
    /* binary: random bytes with NULs and newlines */
    unsigned char junk[4096];
    unsigned long long s = 7;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(test_uniform(&s) * 256);
    bi_write(bi_path(p, sizeof p, "binary.csv"), junk, sizeof junk);
    both_refuse(p, "binary");
    /* a NUL inside a row */
    static const char nul_text[] = "path,label\ngood.nii,a\ngo\0od.nii,b\n";
    bi_write(bi_path(p, sizeof p, "nul_byte.csv"), nul_text, sizeof nul_text - 1);
    both_refuse(p, "line 3|binary");
    /* a million-character line: as a path, and as a label */
    size_t big = 1000000;
    char *text = malloc(big + 200);
    if (text) {
        strcpy(text, "path,label\ngood.nii,a\n");
        size_t n = strlen(text);
        memset(text + n, 'x', big);
        strcpy(text + n + big, ".nii,b\n");
        both_refuse(csv_file("long_path.csv", text), "line 3|characters");
        strcpy(text, "path,label\ngood.nii,a\ngood.nii,");
        n = strlen(text);
        memset(text + n, 'y', big);
        strcpy(text + n + big, "\n");
        both_refuse(csv_file("long_label.csv", text), "line 3|characters");
        free(text);
    }
    both_refuse(bi_path(p, sizeof p, "a_directory.nii"), NULL); /* a directory as the CSV */
}

/* Rows whose volume is bad: found when the row is read, named with its
 * CSV line and file. */
TEST(bad_input_csv_bad_volumes)
{
    if (!bi_good_volume()[0] || !bi_model()[0]) return;
    const char *trunc = bi_bad_volume("trunc_data.nii.gz"), *nan = bi_bad_volume("nan_voxels.nii");
    const char *zero = bi_bad_volume("zero_affine.nii");
    char text[2000], out[600], pred[600], names[1400];
    bi_path(out, sizeof out, "rowvol_model.safetensors");
    bi_path(pred, sizeof pred, "rowvol_pred.csv");
    const char *bad[3] = {trunc, nan, zero};
    for (int b = 0; b < 3; b++) {
        /* the bad volume is a later training row (read during the first epoch) and a test row */
        snprintf(text, sizeof text,
                 "path,label,split\ngood.nii,a,train\ngood.nii,b,train\n%s,a,train\ngood.nii,b,train\n%s,b,test\n"
                 "good.nii,a,test\n",
                 bad[b], bad[b]);
        const char *csv = csv_file("bad_row.csv", text);
        snprintf(names, sizeof names, "%s line 4|%s", csv, bad[b]);
        BI_REFUSED(names, out, "train --data '%s' --arch '%s' --shape 12,12,12 --voxel 2 --epochs 1 --batch 2 --out '%s'",
                   csv, BI_ARCH, out);
        snprintf(names, sizeof names, "%s line 6|%s", csv, bad[b]);
        BI_REFUSED(names, pred, "eval --model '%s' --data '%s' --out '%s'", bi_model(), csv, pred);
    }
    /* the first training row is read first (for the model's grid) */
    snprintf(text, sizeof text, "path,label\n%s,a\ngood.nii,b\n", trunc);
    const char *csv = csv_file("bad_first_row.csv", text);
    BI_REFUSED(trunc, out, "train --data '%s' --arch '%s' --shape 12,12,12 --epochs 1 --out '%s'", csv, BI_ARCH, out);
    /* labels the model does not know; a split without rows */
    csv = csv_file("other_labels.csv", "path,label,split\ngood.nii,a,test\ngood.nii,zebra,test\n");
    BI_REFUSED("line 3|zebra", pred, "eval --model '%s' --data '%s' --out '%s'", bi_model(), csv, pred);
    csv = csv_file("no_val.csv", "path,label,split\ngood.nii,a,train\ngood.nii,b,test\n");
    BI_REFUSED("split val", pred, "eval --model '%s' --data '%s' --split val --out '%s'", bi_model(), csv, pred);
    csv = csv_file("no_train.csv", "path,label,split\ngood.nii,a,val\ngood.nii,b,test\n");
    BI_REFUSED("training rows", out, "train --data '%s' --arch '%s' --shape 12,12,12 --epochs 1 --out '%s'", csv, BI_ARCH, out);
}

/* BOM, CRLF, a quoted path with a comma, a quoted label, other columns in
 * any order, blank lines; volumes of every legal odd kind. */
TEST(bad_input_csv_legal_unusual)
{
    if (!bi_good_volume()[0] || !bi_model()[0]) return;
    char p[600], cmd[1400], pred[600];
    bi_path(p, sizeof p, "sub,1.nii");
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", bi_good_volume(), p);
    CHECK(test_run(cmd, NULL) == 0, "copy %s", p);
    /* the legal volumes are written by bad_input_volume_legal_unusual; write them here if it did not run */
    bi_path(p, sizeof p, "legal_4d.nii.gz");
    struct stat st;
    if (stat(p, &st) != 0) bi_legal_volumes();
    const char *csv = csv_file("odd.csv", "\xEF\xBB\xBFsite,Label,Path,Split,age\r\n"
                                          "x,a,\"sub,1.nii\",test,33\r\n"
                                          "\r\n"
                                          "y,\"b\",good.nii,test,\"4,5\"\r\n"
                                          "z,a,legal_int16_lps.nii,test,1\r\n"
                                          "z,b,legal_uint8_oblique.nii.gz,test,1\r\n"
                                          "z,a,legal_float64_qform.nii,test,1\r\n"
                                          "z,b,legal_no_transform_offset.nii,test,1\r\n"
                                          "z,a,legal_big_endian.nii,test,1\r\n"
                                          "z,b,legal_4d.nii.gz,test,1\r\n");
    nfv_dataset ds;
    if (CHECK_OK(nfv_dataset_load(csv, &ds))) {
        CHECK(ds.count == 8 && strstr(ds.rows[0].path, "sub,1.nii") && !strcmp(ds.rows[1].label, "b") &&
                  ds.rows[0].csv_line == 2 && ds.rows[1].csv_line == 4,
              "odd CSV: %d rows, first %s", ds.count, ds.count ? ds.rows[0].path : "-");
        nfv_dataset_free(&ds);
    }
    bi_path(pred, sizeof pred, "odd_pred.csv");
    remove(pred);
    /* one warning line for the 4-D file */
    BI_ACCEPTED(pred, 1, "eval --model '%s' --data '%s' --out '%s'", bi_model(), csv, pred);
}

/* Option values: negative, zero, NaN, reversed ranges, unknown names,
 * malformed lists; each message names the option. */
TEST(bad_input_train_eval_synth_options)
{
    if (!bi_good_csv()[0] || !bi_model()[0]) return;
    char out[600], pred[600], dir[600];
    bi_path(out, sizeof out, "opt_model.safetensors");
    bi_path(pred, sizeof pred, "opt_pred.csv");
    bi_path(dir, sizeof dir, "opt_synth");
    const struct { const char *opts, *names; } train[] = {
        {"--epochs 0", "--epochs"}, {"--epochs -1", "--epochs"}, {"--epochs 99999999999", "--epochs"},
        {"--batch 0", "--batch"}, {"--lr 0", "--lr"}, {"--lr -1", "--lr"}, {"--lr nan", "--lr"}, {"--lr inf", "--lr"},
        {"--momentum -0.5", "--momentum"}, {"--momentum 1.5", "--momentum"}, {"--weight-decay -1", "--weight-decay"},
        {"--class-weights 1,nan", "--class-weights"}, {"--class-weights -1,1", "--class-weights"},
        {"--class-weights 0,0", "--class-weights"}, {"--class-weights 1,x", "--class-weights"},
        {"--class-weights 1", "--class-weights"}, {"--class-weights 1,2,3", "--class-weights"},
        {"--augment shift=-1", "--augment"}, {"--augment spin", "--augment"},
        {"--head regression", "label 'a' is not a number"}, {"--loss huber", "--loss"}, {"--huber-delta 2", "--huber-delta"},
        {"--head foo", "--head"}, {"--optimizer lbfgs", "--optimizer"}, {"--schedule step", "--schedule"},
        {"--shape 0,12,12", "--shape"}, {"--shape a,b,c", "--shape"}, {"--shape 12,12", "--shape"},
        {"--shape 12,12,12,4", "--shape"}, {"--shape 100000,12,12", "--shape"}, {"--voxel -1", "--voxel"},
        {"--voxel 0", "--voxel"}, {"--voxel nan", "--voxel"}, {"--norm foo", "--norm"}, {"--norm zscore-mask", "--norm"},
        {"--arch 'conv(' ", "--arch"}, {"--arch foo", "--arch"}, {"--arch 'conv(100000000,k3) flatten linear(2)'", "--arch"},
        {"--arch 'conv(8,k99) flatten linear(2)'", "--arch"}, {"--arch 'relu'", "--arch"},
        {"--cache-mb -1", "--cache-mb"}, {"--seed -1", "--seed"}, {"--seed x", "--seed"}, {"--bogus", "--bogus"},
        {"--resume", ".ckpt"},
    };
    for (size_t i = 0; i < sizeof train / sizeof *train; i++) {
        int arch = strstr(train[i].opts, "--arch") != NULL;
        BI_REFUSED(train[i].names, out, "train --data '%s' %s%s%s --shape 12,12,12 --epochs 1 %s --out '%s'",
                   bi_good_csv(), arch ? "" : "--arch '", arch ? "" : BI_ARCH, arch ? "" : "'", train[i].opts, out);
    }
    BI_REFUSED("--data", out, "train --out '%s'", out);
    /* a corrupt checkpoint names itself; the model and log are not created */
    char ckpt[700];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
    remove(out);
    if (CHECK(bi_write_text(ckpt, "not a checkpoint"), "write %s", ckpt)) {
        char log[700];
        snprintf(log, sizeof log, "%s.log.csv", out);
        BI_REFUSED(ckpt, NULL, "train --data '%s' --resume --out '%s'", bi_good_csv(), out);
        struct stat st;
        CHECK(stat(out, &st) != 0 && stat(log, &st) != 0, "resume from a bad checkpoint left %s or its log", out);
        remove(ckpt);
    }

    const struct { const char *opts, *names; } eval[] = {
        {"--split holdout", "--split"}, {"--batch 0", "--batch"}, {"--batch -4", "--batch"}, {"--batch x", "--batch"},
    };
    for (size_t i = 0; i < sizeof eval / sizeof *eval; i++)
        BI_REFUSED(eval[i].names, pred, "eval --model '%s' --data '%s' %s --out '%s'", bi_model(), bi_good_csv(),
                   eval[i].opts, pred);
    BI_REFUSED("--model", pred, "eval --data '%s' --out '%s'", bi_good_csv(), pred);

    /* synth: every option is checked before the cohort directory exists */
    const char *trunc = bi_bad_volume("trunc_data.nii.gz"), *nan = bi_bad_volume("nan_voxels.nii");
    char tmpl[2][700];
    snprintf(tmpl[0], sizeof tmpl[0], "--template '%s'", trunc);
    snprintf(tmpl[1], sizeof tmpl[1], "--template '%s'", nan);
    const struct { const char *opts, *names; } synth[] = {
        {"--n 0", "--n"}, {"--n -5", "--n"}, {"--n 2000000", "--n"}, {"--voxel 0", "--voxel"},
        {"--voxel -2", "--voxel"}, {"--voxel nan", "--voxel"}, {"--voxel 100", "--voxel"},
        {"--shape 0,1,2", "--shape"}, {"--shape 24,24", "--shape"}, {"--shape 3,24,24", "--shape"},
        {"--shape 99999,24,24", "--shape"}, {"--split 50/50", "--split"}, {"--split a/b/c", "--split"},
        {"--split -10/50/60", "--split"}, {"--split 0/0/0", "--split"}, {"--lesion-size 22,16", "--lesion-size"},
        {"--lesion-size nan,3", "--lesion-size"}, {"--lesion-size -1,3", "--lesion-size"},
        {"--lesion-intensity -1,2", "--lesion-intensity"}, {"--lesion-intensity 2,1", "--lesion-intensity"},
        {"--shapes sphere,blob", "blob"}, {"--shapes sphere,sphere", "sphere"}, {"--shapes ''", "--shapes"},
        {"--task counting", "--task"}, {"--seed -1", "--seed"}, {"--threads -1", "--threads"},
        {"--n 2 --shapes sphere,cube,cross", "--n"}, {tmpl[0], trunc}, {tmpl[1], nan},
        {"--template /nonexistent/t.nii.gz", "/nonexistent/t.nii.gz"},
    };
    for (size_t i = 0; i < sizeof synth / sizeof *synth; i++)
        BI_REFUSED(synth[i].names, dir, "synth --n 4 --shape 24,24,24 %s --out '%s'", synth[i].opts, dir);
    BI_REFUSED("--out", NULL, "synth --n 4");
}
