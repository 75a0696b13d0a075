/* The tuning file: the kernel configuration `neurofv tune` found best, per
 * device and driver, next to the program cache.
 *
 *   <cache dir>/tuning.json = {"version": 1, "devices": {
 *       "<device name> | <driver version> | <platform>": {
 *           "config": "vec=8,chunk=1024",   (NEUROFV_KERNEL_CONFIG syntax; "" = defaults)
 *           "default_ms": 12.3, "tuned_ms": 10.1, "candidates": 7}}}
 *
 * Written atomically (temporary name, then rename; base/fs.h), so a reader
 * sees the old file or the new one.  A file that cannot be parsed is
 * reported by nfv_tuning_lookup and ignored by the context (defaults), and
 * replaced by the next store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/fs.h"
#include "runtime/internal.h"

#define TUNING_FILE "tuning.json"
#define TUNING_MAX_BYTES (1 << 20)

void nfv_tuning_key(const nfv_device_info *info, char *key, size_t cap)
{
    snprintf(key, cap, "%s | %s | %s", info->name, info->driver_version, info->platform_name);
}

void nfv_tuning_path(const char *cache_dir, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", cache_dir && cache_dir[0] ? cache_dir : ".", TUNING_FILE);
}

/* The file's text (malloc'ed), NULL when it does not exist; *bad set when
 * it exists but cannot be read or is larger than TUNING_MAX_BYTES. */
static char *read_text(const char *path, int *bad)
{
    char *text;
    int missing;
    *bad = nfv_read_file(path, TUNING_MAX_BYTES, &text, NULL, &missing) != NFV_OK && !missing;
    return text;
}

int nfv_tuning_lookup(const char *cache_dir, const nfv_device_info *info, char *spec, size_t cap, char *why,
                      size_t why_cap)
{
    char path[1200], key[512];
    nfv_tuning_path(cache_dir, path, sizeof path);
    nfv_tuning_key(info, key, sizeof key);
    int bad = 0;
    char *text = read_text(path, &bad);
    if (!text) {
        if (bad) snprintf(why, why_cap, "%s: cannot be read (or larger than 1 MiB)", path);
        return bad ? -1 : 0;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *devices = root ? cJSON_GetObjectItemCaseSensitive(root, "devices") : NULL;
    int rc;
    if (!root || !cJSON_IsObject(devices)) {
        snprintf(why, why_cap, "%s: not a tuning file (want {\"devices\": {...}})", path);
        rc = -1;
    } else {
        cJSON *entry = cJSON_GetObjectItemCaseSensitive(devices, key);
        cJSON *config = entry ? cJSON_GetObjectItemCaseSensitive(entry, "config") : NULL;
        if (!entry) rc = 0;
        else if (!cJSON_IsString(config) || strlen(config->valuestring) >= cap) {
            snprintf(why, why_cap, "%s: the entry for \"%s\" has no valid \"config\" string", path, info->name);
            rc = -1;
        } else {
            snprintf(spec, cap, "%s", config->valuestring);
            rc = 1;
        }
    }
    cJSON_Delete(root);
    return rc;
}

nfv_status nfv_tuning_store(const char *cache_dir, const nfv_device_info *info, const char *spec, double default_ms,
                            double tuned_ms, int candidates)
{
    char path[1200], key[512];
    nfv_tuning_path(cache_dir, path, sizeof path);
    nfv_tuning_key(info, key, sizeof key);
    if (cache_dir && cache_dir[0]) NFV_TRY(nfv_mkdirs(cache_dir));
    int bad = 0;
    char *text = read_text(path, &bad);
    cJSON *root = text ? cJSON_Parse(text) : NULL; /* a corrupt file is replaced */
    free(text);
    if (root && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "devices"))) {
        cJSON_Delete(root);
        root = NULL;
    }
    if (!root) {
        root = cJSON_CreateObject();
        if (root) cJSON_AddNumberToObject(root, "version", 1), cJSON_AddObjectToObject(root, "devices");
    }
    cJSON *devices = root ? cJSON_GetObjectItemCaseSensitive(root, "devices") : NULL;
    cJSON *entry = cJSON_CreateObject();
    if (!devices || !entry) {
        cJSON_Delete(root);
        cJSON_Delete(entry);
        return nfv_fail(NFV_ERR_NO_MEMORY, "tuning file %s: out of memory", path);
    }
    cJSON_AddStringToObject(entry, "config", spec);
    cJSON_AddNumberToObject(entry, "default_ms", default_ms);
    cJSON_AddNumberToObject(entry, "tuned_ms", tuned_ms);
    cJSON_AddNumberToObject(entry, "candidates", candidates);
    cJSON_DeleteItemFromObjectCaseSensitive(devices, key);
    cJSON_AddItemToObject(devices, key, entry);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    if (!out) return nfv_fail(NFV_ERR_NO_MEMORY, "tuning file %s: out of memory", path);
    nfv_status st = nfv_write_text_atomic(path, out);
    free(out);
    return st;
}
