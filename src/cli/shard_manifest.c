/* Shard manifests (shard_manifest.h): one small JSON file per shard. */
#include "shard_manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/fs.h"

/* Options whose value a manifest does not keep (they differ between shards
 * or are given again by the merge). */
static int dropped(const char *command, const char *arg)
{
    if (!strcmp(arg, "--shard")) return 1;
    return !strcmp(command, "compare") && (!strcmp(arg, "--out") || !strcmp(arg, "--runs"));
}

nfv_status shard_manifest_write(const char *path, const char *command, const char *model, const char *runs, int index,
                                int count, int argc, char **argv)
{
    unsigned long long hash;
    NFV_TRY(nfv_file_hash(model, &hash));
    cJSON *j = cJSON_CreateObject(), *args = cJSON_CreateArray();
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", hash);
    cJSON_AddStringToObject(j, "command", command);
    cJSON_AddNumberToObject(j, "shard", index);
    cJSON_AddNumberToObject(j, "shards", count);
    cJSON_AddStringToObject(j, "model", model);
    cJSON_AddStringToObject(j, "model_hash", hex);
    cJSON_AddStringToObject(j, "runs", runs ? runs : "");
    char cwd[4096];
    cJSON_AddStringToObject(j, "cwd", getcwd(cwd, sizeof cwd) ? cwd : ".");
    for (int i = 1; i < argc; i++) {
        if (dropped(command, argv[i])) {
            i++; /* and its value */
            continue;
        }
        if (!strcmp(argv[i], "--merge")) continue;
        cJSON_AddItemToArray(args, cJSON_CreateString(argv[i]));
    }
    cJSON_AddItemToObject(j, "args", args);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
    nfv_status s = nfv_write_text_atomic(path, text);
    free(text);
    return s;
}

void shard_manifest_free(shard_manifest *m)
{
    for (int i = 0; m->argv && i < m->argc; i++) free(m->argv[i]);
    free(m->argv);
    memset(m, 0, sizeof *m);
}

nfv_status shard_manifest_read(const char *path, shard_manifest *m)
{
    memset(m, 0, sizeof *m);
    char *text;
    int missing;
    nfv_status s = nfv_read_file(path, (size_t)1 << 24, &text, NULL, &missing);
    if (s) return missing ? nfv_fail(NFV_ERR_IO, "%s: cannot open (not a shard's output folder?)", path) : s;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(j, "command"), *sh = cJSON_GetObjectItemCaseSensitive(j, "shard"),
                *shs = cJSON_GetObjectItemCaseSensitive(j, "shards"), *mo = cJSON_GetObjectItemCaseSensitive(j, "model"),
                *mh = cJSON_GetObjectItemCaseSensitive(j, "model_hash"), *ru = cJSON_GetObjectItemCaseSensitive(j, "runs"),
                *args = cJSON_GetObjectItemCaseSensitive(j, "args"), *cwd = cJSON_GetObjectItemCaseSensitive(j, "cwd");
    if (!cJSON_IsString(cmd) || !cJSON_IsNumber(sh) || !cJSON_IsNumber(shs) || !cJSON_IsString(mo) ||
        !cJSON_IsString(mh) || !cJSON_IsString(ru) || !cJSON_IsArray(args) || !cJSON_IsString(cwd) ||
        strlen(cwd->valuestring) >= sizeof m->cwd || sh->valueint < 1 ||
        shs->valueint < sh->valueint || strlen(mo->valuestring) >= sizeof m->model ||
        strlen(ru->valuestring) >= sizeof m->runs || strlen(cmd->valuestring) >= sizeof m->command) {
        cJSON_Delete(j);
        return nfv_fail(NFV_ERR_FORMAT, "%s: not a neurofv shard manifest", path);
    }
    snprintf(m->command, sizeof m->command, "%s", cmd->valuestring);
    m->index = sh->valueint, m->count = shs->valueint;
    m->model_hash = strtoull(mh->valuestring, NULL, 16);
    snprintf(m->model, sizeof m->model, "%s", mo->valuestring);
    snprintf(m->runs, sizeof m->runs, "%s", ru->valuestring);
    snprintf(m->cwd, sizeof m->cwd, "%s", cwd->valuestring);
    int n = cJSON_GetArraySize(args);
    m->argv = calloc((size_t)n + 1, sizeof *m->argv);
    for (int i = 0; m->argv && i < n; i++) {
        const cJSON *a = cJSON_GetArrayItem(args, i);
        if (!cJSON_IsString(a)) s = nfv_fail(NFV_ERR_FORMAT, "%s: argument %d is not a string", path, i);
        else if (!(m->argv[m->argc++] = strdup(a->valuestring))) s = nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
        if (s) break;
    }
    if (!m->argv) s = nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
    cJSON_Delete(j);
    if (s) shard_manifest_free(m);
    return s;
}

static int same_args(const shard_manifest *a, const shard_manifest *b)
{
    if (a->argc != b->argc) return 0;
    for (int i = 0; i < a->argc; i++)
        if (strcmp(a->argv[i], b->argv[i])) return 0;
    return 1;
}

nfv_status shard_manifests_check(const char *command, const char *const *paths, int n, shard_manifest *out)
{
    if (n < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "--merge: no shard manifest found");
    shard_manifest first, m;
    NFV_TRY(shard_manifest_read(paths[0], &first));
    nfv_status s = NFV_OK;
    if (strcmp(first.command, command))
        s = nfv_fail(NFV_ERR_INVALID_ARG, "%s is a shard of `neurofv %s`, not of %s", paths[0], first.command, command);
    else if (first.count != n)
        s = nfv_fail(NFV_ERR_INVALID_ARG, "--merge: the shards are %d of a run of %d shards; give all %d (got %d)", n,
                     first.count, first.count, n);
    char *seen = calloc((size_t)first.count + 1, 1);
    if (!s && !seen) s = nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < n && !s; i++) {
        if (i == 0) m = first;
        else if ((s = shard_manifest_read(paths[i], &m))) break;
        if (m.count != first.count || strcmp(m.command, first.command))
            s = nfv_fail(NFV_ERR_INVALID_ARG, "--merge: %s is shard %d of %d of `%s`, %s of %d of `%s`", paths[i], m.index,
                         m.count, m.command, paths[0], first.count, first.command);
        else if (m.model_hash != first.model_hash)
            s = nfv_fail(NFV_ERR_INVALID_ARG, "--merge: %s ran model %s, %s another model (%s): refusing to merge",
                         paths[i], m.model, paths[0], first.model);
        else if (!same_args(&m, &first) || strcmp(m.runs, first.runs) || strcmp(m.cwd, first.cwd))
            s = nfv_fail(NFV_ERR_INVALID_ARG, "--merge: %s and %s ran different options (or runs folders): refusing "
                         "to merge", paths[i], paths[0]);
        else if (seen[m.index]++)
            s = nfv_fail(NFV_ERR_INVALID_ARG, "--merge: shard %d of %d is given twice (%s)", m.index, m.count, paths[i]);
        if (i > 0) shard_manifest_free(&m);
    }
    unsigned long long now = 0;
    char model[8200];
    snprintf(model, sizeof model, "%s%s%s", first.model[0] == '/' ? "" : first.cwd, first.model[0] == '/' ? "" : "/",
             first.model);
    if (!s) s = nfv_file_hash(model, &now);
    if (!s && now != first.model_hash)
        s = nfv_fail(NFV_ERR_INVALID_ARG, "--merge: %s changed since the shards ran: refusing to merge", first.model);
    free(seen);
    if (s) {
        shard_manifest_free(&first);
        return s;
    }
    *out = first;
    return NFV_OK;
}
