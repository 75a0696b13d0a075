/* `neurofv compare` over several processes: --shard I/N|auto (Slurm array
 * tasks) with their manifests, --merge of shards into the report one run
 * writes, and the runs split over MPI ranks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "cli.h"
#include "compare_cli.h"
#include "neurofv/dist.h"
#include "shard_manifest.h"

/* --shard (a Slurm array task) or the rank under mpirun: which runs
 * (configuration x seed, in their order) this process visualizes.  Returns
 * 0 or 1 (error printed). */
int compare_select_shard(compare_state *cs)
{
    const compare_args *a = cs->a;
    cs->shard_i = cs->shard_n = 1;
    cs->mpi = nfv_dist_size() > 1;
    if (a->shard && cs->mpi)
        return cli_failf("compare", "--shard splits a run over Slurm array tasks and mpirun over ranks; use one");
    if (a->shard && a->merging) return cli_failf("compare", "--merge and --shard: merge the shards' folders alone");
    if (cs->mpi) cs->shard_i = nfv_dist_rank() + 1, cs->shard_n = nfv_dist_size();
    nfv_status st = a->shard ? nfv_shard_parse(a->shard, &cs->shard_i, &cs->shard_n) : NFV_OK;
    return st ? cli_fail("compare", st) : 0;
}

/* Under mpirun, after each rank ran its runs: rank 0 reads every run back
 * from the shared runs folder (each rank's outputs are byte for byte those
 * one process writes) to report on all of them. */
int compare_mpi_gather_runs(compare_state *cs)
{
    nfv_status st = nfv_dist_barrier();
    if (st) return cli_fail("compare", st);
    if (nfv_dist_rank() != 0) return 0;
    cs->nrows = 0;
    cs->reread = 1;
    cs->quiet = 0;
    int rc = 0;
    for (int run = 0; run < cs->nconfigs * cs->nseeds && !rc; run++) rc = compare_run_config(cs, run);
    return rc;
}

/* DIR/shard-I-of-N/shard.json: this shard's command line, model and runs
 * folder, for `compare --merge`. */
int compare_write_manifest(const compare_state *cs)
{
    char path[4400], runs_abs[4096];
    if (!realpath(cs->runs, runs_abs)) return cli_failf("compare", "%s: cannot resolve: %s", cs->runs, strerror(errno));
    snprintf(path, sizeof path, "%s/shard.json", cs->report);
    nfv_status st = shard_manifest_write(path, "compare", cs->a->model_path, runs_abs, cs->shard_i, cs->shard_n,
                                         cs->a->argc, cs->a->argv);
    return st ? cli_fail("compare", st) : 0;
}

/* compare --merge DIR1 DIR2 ... --out OUT: the shards' manifests agree
 * (shard_manifest.h), then their command line runs again over every run,
 * reading each result from the shared runs folder, writing OUT's report. */
int compare_merge_shards(const char *const *dirs, int ndirs, const char *out)
{
    if (!out) return cli_failf("compare", "--merge needs --out DIR for the merged report");
    char **paths = calloc((size_t)ndirs + 1, sizeof *paths);
    int rc = paths ? 0 : cli_failf("compare", "out of memory");
    for (int i = 0; !rc && i < ndirs; i++) {
        size_t n = strlen(dirs[i]) + 16;
        if (!(paths[i] = malloc(n))) rc = cli_failf("compare", "out of memory");
        else snprintf(paths[i], n, "%s/shard.json", dirs[i]);
    }
    shard_manifest m;
    memset(&m, 0, sizeof m);
    nfv_status st = rc ? NFV_OK : shard_manifests_check("compare", (const char *const *)paths, ndirs, &m);
    if (st) rc = cli_fail("compare", st);
    char **args = rc ? NULL : calloc((size_t)m.argc + 8, sizeof *args);
    if (!rc && !args) rc = cli_failf("compare", "out of memory");
    if (!rc) {
        int n = 0;
        args[n++] = "compare";
        for (int i = 0; i < m.argc; i++) args[n++] = m.argv[i];
        args[n++] = "--out", args[n++] = (char *)out, args[n++] = "--runs", args[n++] = m.runs;
        args[n++] = "--resume";
        /* The shards' relative paths (model, truth) are from where they ran. */
        char out_abs[4096];
        st = nfv_mkdirs(out);
        if (!st && !realpath(out, out_abs)) st = nfv_fail(NFV_ERR_IO, "%s: cannot resolve: %s", out, strerror(errno));
        if (!st && chdir(m.cwd) != 0)
            st = nfv_fail(NFV_ERR_IO, "--merge: cannot enter %s, where the shards ran: %s", m.cwd, strerror(errno));
        args[n - 4] = out_abs;
        if (st) rc = cli_fail("compare", st);
        else {
            fprintf(stderr, "compare: merging %d shard(s) of %s into %s\n", ndirs, m.model, out);
            rc = compare_main(n, args, 1);
        }
    }
    free(args);
    shard_manifest_free(&m);
    for (int i = 0; paths && i < ndirs; i++) free(paths[i]);
    free(paths);
    return rc;
}

