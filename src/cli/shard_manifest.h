/* Shard manifests: what one shard of a sweep (visualize or compare with
 * --shard I/N or auto) ran, written beside its outputs, so `--merge` can
 * check that shards belong together (same command line, same model bytes,
 * every shard once) and replay the command over all of them, reading every
 * result back from the shards' outputs instead of computing it. */
#ifndef NEUROFV_CLI_SHARD_MANIFEST_H
#define NEUROFV_CLI_SHARD_MANIFEST_H

#include "neurofv/status.h"

typedef struct shard_manifest {
    char command[32];
    int index, count;             /* shard I of N */
    unsigned long long model_hash;
    char model[4096];             /* --model as given */
    char runs[4096];              /* compare: the runs' folder, absolute; else "" */
    char cwd[4096];               /* where the shard ran: its relative paths are from there */
    int argc;                     /* the command line without --shard, --out and --runs */
    char **argv;
} shard_manifest;

/* The command line to keep: argv[0..argc) without "--shard X", "--merge",
 * and for compare "--out X" and "--runs X" (a merge gives its own).
 * Writes `path` atomically. */
nfv_status shard_manifest_write(const char *path, const char *command, const char *model, const char *runs, int index,
                                int count, int argc, char **argv);
nfv_status shard_manifest_read(const char *path, shard_manifest *m);
void shard_manifest_free(shard_manifest *m);

/* Reads the n manifests and checks that they are shards 1..N of one run:
 * the same command and line, the same model bytes (also the model file as
 * it is now), each index once.  *out receives the first (the others are
 * freed).  Errors name the file that disagrees and how. */
nfv_status shard_manifests_check(const char *command, const char *const *paths, int n, shard_manifest *out);

#endif
