/* mkdir -p and atomic writes; see fs.h. */
#include "base/fs.h"
#include "base/rng.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

nfv_status nfv_mkdirs(const char *path)
{
    char tmp[4096];
    if (!path || !*path) return nfv_fail(NFV_ERR_INVALID_ARG, "mkdir: empty path");
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return nfv_fail(NFV_ERR_IO, "%s: path too long", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST)
                return nfv_fail(NFV_ERR_IO, "cannot create directory %s: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) && errno != EEXIST)
        return nfv_fail(NFV_ERR_IO, "cannot create directory %s: %s", tmp, strerror(errno));
    struct stat sb;
    if (stat(tmp, &sb) || !S_ISDIR(sb.st_mode)) return nfv_fail(NFV_ERR_IO, "%s is not a directory", tmp);
    return NFV_OK;
}

nfv_status nfv_relative_dir(const char *from, const char *to, char *out, size_t cap)
{
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(from, a)) return nfv_fail(NFV_ERR_IO, "cannot resolve folder %s: %s", from, strerror(errno));
    if (!realpath(to, b)) return nfv_fail(NFV_ERR_IO, "cannot resolve folder %s: %s", to, strerror(errno));
    /* The longest common prefix of whole components. */
    size_t common = 0, i = 0;
    while (a[i] && a[i] == b[i]) {
        i++;
        if ((a[i] == '/' || !a[i]) && (b[i] == '/' || !b[i])) common = i;
    }
    if (!a[i] && !b[i]) common = i;
    size_t used = 0;
    out[0] = 0;
    for (const char *p = a + common; *p; p++) /* one ".." per component of from below the prefix */
        if (*p == '/' && p[1]) {
            int w = snprintf(out + used, cap - used, "%s..", used ? "/" : "");
            if (w < 0 || (size_t)w >= cap - used) return nfv_fail(NFV_ERR_IO, "relative path from %s: too long", from);
            used += (size_t)w;
        }
    const char *rest = b + common;
    while (*rest == '/') rest++;
    if (*rest) {
        int w = snprintf(out + used, cap - used, "%s%s", used ? "/" : "", rest);
        if (w < 0 || (size_t)w >= cap - used) return nfv_fail(NFV_ERR_IO, "relative path to %s: too long", to);
        used += (size_t)w;
    }
    if (!used) snprintf(out, cap, ".");
    return NFV_OK;
}

nfv_status nfv_temp_name(const char *path, char *tmp, size_t cap)
{
    if (!path || !*path) return nfv_fail(NFV_ERR_INVALID_ARG, "write: empty path");
    if (snprintf(tmp, cap, "%s.tmp%ld", path, (long)getpid()) >= (int)cap)
        return nfv_fail(NFV_ERR_IO, "%.64s...: path too long", path);
    return NFV_OK;
}

nfv_status nfv_rename_into_place(nfv_status status, const char *tmp, const char *path)
{
    if (status == NFV_OK && rename(tmp, path) != 0)
        status = nfv_fail(NFV_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (status != NFV_OK) unlink(tmp);
    return status;
}

nfv_status nfv_atomic_open(nfv_atomic_file *af, const char *path, const char *mode)
{
    af->f = NULL;
    if (snprintf(af->path, sizeof af->path, "%s", path ? path : "") >= (int)sizeof af->path)
        return nfv_fail(NFV_ERR_IO, "%.64s...: path too long", path);
    NFV_TRY(nfv_temp_name(path, af->tmp, sizeof af->tmp));
    af->f = fopen(af->tmp, mode);
    if (!af->f) return nfv_fail(NFV_ERR_IO, "%s: cannot write %s: %s", path, af->tmp, strerror(errno));
    return NFV_OK;
}

nfv_status nfv_atomic_commit(nfv_atomic_file *af)
{
    if (!af->f) return nfv_fail(NFV_ERR_IO, "%s: not open for writing", af->path);
    int bad = ferror(af->f) || fflush(af->f) != 0;
    int err = bad ? errno : 0;
    if (fclose(af->f) != 0 && !bad) bad = 1, err = errno;
    af->f = NULL;
    nfv_status s = NFV_OK;
    if (bad) s = nfv_fail(NFV_ERR_IO, "%s: write failed: %s", af->path, err ? strerror(err) : "stream error");
    return nfv_rename_into_place(s, af->tmp, af->path);
}

void nfv_atomic_abort(nfv_atomic_file *af)
{
    if (af->f) fclose(af->f);
    af->f = NULL;
    unlink(af->tmp);
}

nfv_status nfv_write_text_atomic(const char *path, const char *text)
{
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    fputs(text, af.f);
    return nfv_atomic_commit(&af);
}

nfv_status nfv_file_hash(const char *path, unsigned long long *hash)
{
    FILE *f = fopen(path, "rb");
    if (!f) return nfv_fail(NFV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned long long h = NFV_HASH_SEED;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = nfv_hash64(buf, n, h);
    int bad = ferror(f);
    fclose(f);
    if (bad) return nfv_fail(NFV_ERR_IO, "%s: read error", path);
    *hash = h;
    return NFV_OK;
}

nfv_status nfv_read_file(const char *path, size_t max_bytes, char **data, size_t *size, int *missing)
{
    *data = NULL;
    if (size) *size = 0;
    if (missing) *missing = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing) *missing = errno == ENOENT;
        return nfv_fail(NFV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return nfv_fail(NFV_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    if ((unsigned long long)sb.st_size > max_bytes) {
        fclose(f);
        return nfv_fail(NFV_ERR_FORMAT, "%s: %llu bytes, more than the %zu this file may have", path,
                        (unsigned long long)sb.st_size, max_bytes);
    }
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory (%zu bytes)", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return nfv_fail(NFV_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    if (size) *size = n;
    return NFV_OK;
}
