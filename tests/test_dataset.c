/* Datasets: CSV parsing (quotes, CRLF, column order, relative paths), every
 * documented error naming its CSV line, and the LRU volume cache staying
 * under its byte cap while returning the same data as direct preprocessing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "neurofv/volume.h"
#include "test.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A small volume whose values identify it (seed). */
static int write_volume(const char *path, int seed)
{
    nfv_volume v;
    if (nfv_volume_alloc(&v, 9, 8, 7, NULL) != NFV_OK) return 0;
    float *r = test_random(nfv_volume_numel(&v), (unsigned)seed, 1.0f, 100.0f);
    memcpy(v.data, r, nfv_volume_numel(&v) * sizeof(float));
    free(r);
    nfv_status s = nfv_volume_write(path, &v);
    nfv_volume_free(&v);
    return s == NFV_OK;
}

/* <tmp>/ds/ with sub/a.nii.gz, sub/b,c.nii.gz (comma in the name), d.nii ... */
static const char *setup_dir(void)
{
    static char dir[512];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/ds", test_tmpdir());
    char p[700];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/sub", dir);
    mkdir(p, 0755);
    const char *names[] = {"sub/a.nii.gz", "sub/b,c.nii.gz", "d.nii", "e.nii", "f.nii", "g.nii"};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        CHECK(write_volume(p, 40 + i), "cannot write %s", p);
    }
    return dir;
}

static nfv_status load_text(const char *name, const char *text, nfv_dataset *ds, char *csv, size_t cap)
{
    snprintf(csv, cap, "%s/%s", setup_dir(), name);
    write_text(csv, text);
    return nfv_dataset_load(csv, ds);
}

TEST(dataset_csv_parse)
{
    char csv[700];
    nfv_dataset ds;
    /* CRLF, BOM, quoted path with a comma, spaces, blank line, split column. */
    const char *text = "\xEF\xBB\xBFpath,label,split\r\n"
                       "sub/a.nii.gz, lesion ,train\r\n"
                       "\"sub/b,c.nii.gz\",\"control\",val\r\n"
                       "\r\n"
                       "d.nii,lesion,test\r\n"
                       "e.nii,\"con\"\"trol\",\r\n";
    if (!CHECK_OK(load_text("a.csv", text, &ds, csv, sizeof csv))) return;
    CHECK(ds.count == 4, "rows %d", ds.count);
    if (ds.count == 4) {
        char want[700];
        snprintf(want, sizeof want, "%s/sub/b,c.nii.gz", setup_dir());
        CHECK(!strcmp(ds.rows[1].path, want), "quoted path resolved to %s", ds.rows[1].path);
        CHECK(!strcmp(ds.rows[0].label, "lesion"), "label trimmed: '%s'", ds.rows[0].label);
        CHECK(!strcmp(ds.rows[3].label, "con\"trol"), "escaped quote: '%s'", ds.rows[3].label);
        CHECK(ds.rows[0].split == NFV_SPLIT_TRAIN && ds.rows[1].split == NFV_SPLIT_VAL &&
                  ds.rows[2].split == NFV_SPLIT_TEST && ds.rows[3].split == NFV_SPLIT_TRAIN,
              "splits %d %d %d %d", ds.rows[0].split, ds.rows[1].split, ds.rows[2].split, ds.rows[3].split);
        CHECK(ds.rows[0].csv_line == 2 && ds.rows[2].csv_line == 5, "csv lines %d %d", ds.rows[0].csv_line,
              ds.rows[2].csv_line);
        /* classes sorted: con"trol, control, lesion */
        CHECK(ds.class_count == 3 && !strcmp(ds.class_names[0], "con\"trol") && !strcmp(ds.class_names[2], "lesion"),
              "classes %d", ds.class_count);
        CHECK(ds.rows[0].class_index == 2 && ds.rows[1].class_index == 1 && ds.rows[3].class_index == 0,
              "class indices %d %d %d", ds.rows[0].class_index, ds.rows[1].class_index, ds.rows[3].class_index);
    }
    nfv_dataset_free(&ds);

    /* Columns in another order, an extra column, no split, absolute path. */
    char text2[2000];
    snprintf(text2, sizeof text2, "subject,label,path\ns1,b,d.nii\ns2,a,%s/e.nii\n", setup_dir());
    if (CHECK_OK(load_text("b.csv", text2, &ds, csv, sizeof csv))) {
        CHECK(ds.count == 2 && ds.rows[0].split == NFV_SPLIT_TRAIN && ds.rows[0].class_index == 1 &&
                  ds.rows[1].class_index == 0,
              "reordered columns misread");
        nfv_dataset_free(&ds);
    }
    nfv_split sp;
    CHECK(nfv_split_parse("validation", &sp) == NFV_OK && sp == NFV_SPLIT_VAL, "split alias");
    CHECK(!strcmp(nfv_split_name(NFV_SPLIT_TEST), "test"), "split name");
    CHECK(nfv_split_parse("dev", &sp) == NFV_ERR_INVALID_ARG, "unknown split name must fail");
}

/* Each bad CSV: an error whose single-line message contains `want`. */
static void expect_error(const char *name, const char *text, const char *want)
{
    char csv[700];
    nfv_dataset ds;
    nfv_status s = load_text(name, text, &ds, csv, sizeof csv);
    const char *msg = nfv_error_message();
    CHECK(s != NFV_OK, "%s: expected an error", name);
    CHECK(strstr(msg, want) != NULL && strchr(msg, '\n') == NULL, "%s: message '%s' should contain '%s'", name, msg,
          want);
    CHECK(ds.rows == NULL && ds.count == 0, "%s: dataset not cleared on error", name);
}

TEST(dataset_csv_errors)
{
    expect_error("missing.csv", "path,label\nd.nii,a\nnope.nii,b\n", "missing.csv line 3: file not found");
    expect_error("split.csv", "path,label,split\nd.nii,a,train\ne.nii,b,holdout\n", "split.csv line 3: unknown split");
    expect_error("empty_label.csv", "path,label\nd.nii,a\ne.nii,\n", "empty_label.csv line 3: empty label");
    expect_error("one_class.csv", "path,label\nd.nii,a\ne.nii,a\nf.nii,a\n", "need at least 2 classes");
    expect_error("no_header.csv", "d.nii,a\ne.nii,b\n", "no_header.csv line 1: header has no 'path' column");
    expect_error("no_label.csv", "path,class\nd.nii,a\n", "no 'label' column");
    expect_error("quote.csv", "path,label\n\"d.nii,a\ne.nii,b\n", "quote.csv line 2: unterminated quoted field");
    expect_error("short.csv", "label,split,path\na,train\n", "short.csv line 2: 2 fields");
    expect_error("header_only.csv", "path,label\n", "no data rows");
    expect_error("empty.csv", "", "empty file");
    nfv_dataset ds;
    CHECK(nfv_dataset_load("/nonexistent/x.csv", &ds) == NFV_ERR_IO, "missing CSV file must be an I/O error");
}

/* Numeric labels (regression): numbers in several spellings, no classes,
 * and a label that is not a number named with its file and line. */
TEST(dataset_numeric_labels)
{
    char csv[700];
    snprintf(csv, sizeof csv, "%s/ages.csv", setup_dir());
    write_text(csv, "path,label,split\nd.nii, 71.5 ,train\ne.nii,-3,val\nf.nii,\"1e2\",test\ng.nii,64,train\n");
    nfv_dataset ds;
    if (CHECK_OK(nfv_dataset_load_numeric(csv, &ds))) {
        CHECK(ds.count == 4 && ds.class_count == 0 && ds.class_names == NULL, "4 rows, no classes (%d rows, %d classes)",
              ds.count, ds.class_count);
        if (ds.count == 4)
            CHECK(ds.rows[0].value == 71.5 && ds.rows[1].value == -3 && ds.rows[2].value == 100 &&
                      ds.rows[3].value == 64 && ds.rows[0].class_index == -1 && ds.rows[2].split == NFV_SPLIT_TEST,
                  "values %g %g %g %g", ds.rows[0].value, ds.rows[1].value, ds.rows[2].value, ds.rows[3].value);
        nfv_dataset_free(&ds);
    }
    /* The same CSV as classes: labels stay strings, values NaN. */
    if (CHECK_OK(nfv_dataset_load(csv, &ds))) {
        CHECK(ds.class_count == 4 && ds.rows[0].value != ds.rows[0].value, "as classes: 4 classes, no values");
        nfv_dataset_free(&ds);
    }
    /* One equal label everywhere is fine as numbers (the trainer refuses a constant train split). */
    snprintf(csv, sizeof csv, "%s/ages_same.csv", setup_dir());
    write_text(csv, "path,label\nd.nii,70\ne.nii,70\n");
    if (CHECK_OK(nfv_dataset_load_numeric(csv, &ds))) nfv_dataset_free(&ds);
    const struct {
        const char *name, *text, *want;
    } bad[] = {
        {"ages_bad.csv", "path,label\nd.nii,70\ne.nii,71\nf.nii,seventy\n", "ages_bad.csv line 4: label 'seventy' is not a number"},
        {"ages_unit.csv", "path,label\nd.nii,70y\n", "ages_unit.csv line 2: label '70y' is not a number"},
        {"ages_nan.csv", "path,label\nd.nii,70\ne.nii,nan\n", "ages_nan.csv line 3: label 'nan'"},
        {"ages_inf.csv", "path,label\nd.nii,1e999\n", "ages_inf.csv line 2: label '1e999'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(csv, sizeof csv, "%s/%s", setup_dir(), bad[i].name);
        write_text(csv, bad[i].text);
        nfv_status s = nfv_dataset_load_numeric(csv, &ds);
        const char *msg = nfv_error_message();
        CHECK(s == NFV_ERR_FORMAT && strstr(msg, bad[i].want) && ds.count == 0, "%s: '%s' should contain '%s'",
              bad[i].name, msg, bad[i].want);
    }
}

TEST(dataset_volume_cache_lru)
{
    char csv[700];
    nfv_dataset ds;
    if (!CHECK_OK(load_text("cache.csv", "path,label\nd.nii,a\ne.nii,b\nf.nii,a\ng.nii,b\n", &ds, csv, sizeof csv)))
        return;
    nfv_grid grid = {8, 10, 6, {1.0, 1.0, 1.0}, NFV_NORM_ZSCORE_NONZERO};
    size_t vol_bytes = (size_t)8 * 10 * 6 * sizeof(float);
    nfv_volume_cache *c;
    if (!CHECK_OK(nfv_volume_cache_create(&ds, &grid, vol_bytes * 5 / 2, &c))) return; /* room for 2 */
    /* Reference: direct read + preprocess of each row. */
    float *ref[4] = {0};
    for (int r = 0; r < 4; r++) {
        nfv_volume raw, pre;
        if (CHECK_OK(nfv_volume_read(ds.rows[r].path, &raw, NULL)) && CHECK_OK(nfv_preprocess(&raw, &grid, &pre))) {
            ref[r] = pre.data;
            nfv_volume_free(&raw);
        }
    }
    /* 0 1 0 2 (evicts 1, least recent) 0 1 (evicts 2) 3 (evicts 0) 1 */
    const int order[] = {0, 1, 0, 2, 0, 1, 3, 1};
    const int hit[] = {0, 0, 1, 0, 1, 0, 0, 1};
    long hits = 0, misses = 0;
    for (int t = 0; t < 8; t++) {
        const float *d = NULL;
        if (!CHECK_OK(nfv_volume_cache_get(c, order[t], &d))) break;
        if (ref[order[t]])
            CHECK(!memcmp(d, ref[order[t]], vol_bytes), "step %d: row %d differs from direct preprocessing", t,
                  order[t]);
        nfv_volume_cache_stats st;
        nfv_volume_cache_get_stats(c, &st);
        CHECK(st.bytes <= st.cap_bytes && st.resident <= 2, "step %d: %zu bytes, %d volumes over the cap %zu", t,
              st.bytes, st.resident, st.cap_bytes);
        hits += hit[t];
        misses += !hit[t];
        CHECK(st.hits == hits && st.misses == misses, "step %d: hits %ld misses %ld, LRU expects %ld %ld", t, st.hits,
              st.misses, hits, misses);
    }
    CHECK(nfv_volume_cache_get(c, 4, &(const float *){0}) == NFV_ERR_INVALID_ARG, "row out of range");
    nfv_volume_cache_free(c);

    /* A cap below one volume keeps just the latest one. */
    if (CHECK_OK(nfv_volume_cache_create(&ds, &grid, 1, &c))) {
        const float *d;
        for (int r = 0; r < 4; r++) CHECK_OK(nfv_volume_cache_get(c, r, &d));
        nfv_volume_cache_stats st;
        nfv_volume_cache_get_stats(c, &st);
        CHECK(st.resident == 1 && st.misses == 4, "tiny cap: %d resident, %ld misses", st.resident, st.misses);
        nfv_volume_cache_free(c);
    }

    /* A file removed after loading the CSV: the error names the CSV line. */
    if (CHECK_OK(nfv_volume_cache_create(&ds, &grid, vol_bytes * 4, &c))) {
        nfv_dataset_free(&ds); /* the cache keeps its own copies */
        char gone[700];
        snprintf(gone, sizeof gone, "%s/g.nii", setup_dir());
        remove(gone);
        const float *d;
        nfv_status s = nfv_volume_cache_get(c, 3, &d);
        CHECK(s != NFV_OK && strstr(nfv_error_message(), "cache.csv line 5") != NULL, "error should name the line: %s",
              nfv_error_message());
        CHECK(write_volume(gone, 45), "cannot restore %s", gone);
        nfv_volume_cache_free(c);
    } else {
        nfv_dataset_free(&ds);
    }
    for (int r = 0; r < 4; r++) free(ref[r]);
}
