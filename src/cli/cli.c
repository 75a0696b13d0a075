/* Command-line parsing, error reporting and progress; see src/cli.h. */
#include "base/interrupt.h"
#include "cli.h"
#include "neurofv/dist.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"

static void print_help(const char *command, const char *usage, const char *description, const cli_option *opts)
{
    printf("usage: neurofv %s %s\n\n%s\n\noptions:\n", command, usage, description);
    for (const cli_option *o = opts; o && o->name; o++) {
        char left[64];
        if (o->type == CLI_FLAG) snprintf(left, sizeof left, "%s", o->name);
        else snprintf(left, sizeof left, "%s %s", o->name, o->meta ? o->meta : "X");
        printf("  %-26s %s\n", left, o->help);
    }
    printf("  %-26s %s\n", "-h, --help", "show this help");
}

/* A value of the option's type: integers in int range, unsigned integers
 * without a sign, finite numbers (NaN and Inf are never an option value). */
static int set_value(const char *command, const cli_option *o, const char *v)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_STRING: *(const char **)o->dst = v; return 0;
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (errno || !end || *end || end == v || x < INT_MIN || x > INT_MAX) break;
        *(int *)o->dst = (int)x;
        return 0;
    }
    case CLI_U64: {
        while (isspace((unsigned char)*v)) v++;
        if (*v == '-' || *v == '+') break; /* strtoull would wrap -1 to 2^64 - 1 */
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || !end || *end || end == v) break;
        *(unsigned long long *)o->dst = x;
        return 0;
    }
    case CLI_FLOAT: {
        float x = strtof(v, &end);
        if (errno || !end || *end || end == v || !isfinite(x)) break;
        *(float *)o->dst = x;
        return 0;
    }
    case CLI_FLAG: *(int *)o->dst = 1; return 0;
    }
    fprintf(stderr, "neurofv %s: %s expects %s, got \"%s\"\n", command, o->name,
            o->type == CLI_FLOAT ? "a finite number" : o->type == CLI_U64 ? "a non-negative integer" : "an integer", v);
    return 2;
}

int cli_parse(const char *command, const char *usage, const char *description, const cli_option *opts, int argc,
              char **argv, const char **positional, int max_positional, int *npositional)
{
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            print_help(command, usage, description, opts);
            return 1;
        }
        if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a) : strlen(a);
            const cli_option *o = NULL;
            for (const cli_option *p = opts; p && p->name; p++)
                if (strlen(p->name) == len && !strncmp(p->name, a, len)) o = p;
            if (!o) {
                fprintf(stderr, "neurofv %s: unknown option %.*s (see neurofv %s --help)\n", command, (int)len, a,
                        command);
                return 2;
            }
            if (o->type == CLI_FLAG) {
                if (eq) {
                    fprintf(stderr, "neurofv %s: %s takes no value\n", command, o->name);
                    return 2;
                }
                *(int *)o->dst = 1;
                continue;
            }
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "neurofv %s: %s needs a value\n", command, o->name);
                return 2;
            }
            if (set_value(command, o, v)) return 2;
            continue;
        }
        if (np >= max_positional) {
            fprintf(stderr, "neurofv %s: unexpected argument \"%s\" (see neurofv %s --help)\n", command, a, command);
            return 2;
        }
        positional[np++] = a;
    }
    if (npositional) *npositional = np;
    return 0;
}

/* A run stopped by SIGINT/SIGTERM exits as the shell reports a signal
 * (128 + signo), so job schedulers and scripts can tell it from a failure;
 * whatever error the stop surfaced as on its way up (a compare
 * configuration, a target) it is the signal's doing. */
static int cli_exit_code(void) { return nfv_interrupted() ? 128 + nfv_interrupted() : 1; }

int cli_fail(const char *command, nfv_status s)
{
    fprintf(stderr, "neurofv %s: %s\n", command, nfv_error_message());
    (void)s;
    return cli_exit_code();
}

int cli_failf(const char *command, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "neurofv %s: %s\n", command, msg);
    /* Kept as the last error too: under mpirun the stopping message names it. */
    nfv_fail(NFV_ERR_INVALID_ARG, "%s", msg);
    return cli_exit_code();
}

void cli_estimate_start(cli_estimate_state *e)
{
    memset(e, 0, sizeof *e);
    e->start = nfv_seconds();
}

int cli_estimate_update(cli_estimate_state *e, long done, long total, double *per_unit, double *whole,
                        double *left)
{
    double now = nfv_seconds();
    if (e->printed || done <= 0 || done >= total) return 0;
    if (!e->first_done) {
        e->first_done = done, e->first_t = now;
        return 0;
    }
    long measured = done - e->first_done;
    if (measured < CLI_ESTIMATE_UNITS || now - e->first_t < 0.5) return 0;
    e->printed = 1;
    *per_unit = (now - e->first_t) / (double)measured;
    *left = *per_unit * (double)(total - done);
    *whole = (now - e->start) + *left;
    return 1;
}

const char *cli_duration(double s, char *buf, size_t cap)
{
    if (s < 90) snprintf(buf, cap, "%.0f s", s);
    else if (s < 5400) snprintf(buf, cap, "%d min %02d s", (int)(s / 60), (int)s % 60);
    else snprintf(buf, cap, "%d h %02d min", (int)(s / 3600), (int)(s / 60) % 60);
    return buf;
}

void cli_progress_start(cli_progress *p, const char *label)
{
    p->label = label;
    p->start = p->last_print = nfv_seconds();
    p->is_tty = isatty(2);
    p->silent = nfv_dist_rank() != 0;
    p->repeat = 1;
    cli_estimate_start(&p->est);
}

void cli_progress_update(cli_progress *p, long done, long total, const char *extra)
{
    if (p->silent) return;
    double now = nfv_seconds(), per, whole, left;
    if (cli_estimate_update(&p->est, done, total, &per, &whole, &left)) {
        char w[32], l[32];
        char job[96] = "";
        if (p->repeat > 1) /* the first loop's start-up (kernel builds) is paid once */
            snprintf(job, sizeof job, "; the whole job of %d such runs about %s", p->repeat,
                     cli_duration(whole + (p->repeat - 1) * per * (double)total, l, sizeof l));
        fprintf(stderr, "%s%s: estimate: %s in all, %s left (%.3g s per step over %d steps after the first)%s\n",
                p->is_tty ? "\r\033[K" : "", p->label, cli_duration(whole, w, sizeof w),
                cli_duration(left, l, sizeof l), per, (int)(done - p->est.first_done), job);
    }
    double every = p->is_tty ? 0.2 : 10.0;
    if (done < total && now - p->last_print < every) return;
    p->last_print = now;
    double el = now - p->start;
    double eta = done > 0 ? el * (double)(total - done) / (double)done : 0.0;
    if (p->is_tty) {
        int width = 30, fill = total > 0 ? (int)(width * done / total) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r%s [%s] %ld/%ld %.0fs ETA %.0fs %s\033[K", p->label, bar, done, total, el, eta,
                extra ? extra : "");
    } else {
        fprintf(stderr, "%s %ld/%ld %.0fs ETA %.0fs %s\n", p->label, done, total, el, eta, extra ? extra : "");
    }
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->is_tty && !p->silent) fprintf(stderr, "\n");
}
