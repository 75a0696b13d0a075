/* Command-line helpers shared by the `neurofv` commands (src/cmd_*.c).
 *
 * A command file declares itself with one line at file scope:
 *   NFV_COMMAND(fn_name, "command-name", "one-line summary")
 * and defines `int cmd_fn_name(int argc, char **argv)` returning the exit
 * status.  The Makefile collects those lines into the command table. */
#ifndef NEUROFV_CLI_H
#define NEUROFV_CLI_H

#include <stdio.h>

#include "neurofv/status.h"

#define NFV_COMMAND(fn, name, summary)

typedef enum cli_type { CLI_STRING, CLI_INT, CLI_FLOAT, CLI_FLAG, CLI_U64 } cli_type;

typedef struct cli_option {
    const char *name;    /* "--epochs" */
    cli_type type;
    void *dst;           /* const char **, int *, float *, int * (flag), unsigned long long * */
    const char *meta;    /* "N", "FILE" (ignored for flags) */
    const char *help;    /* shown by --help, with the default if any */
} cli_option;

/* Parse argv[1..] against opts; non-option words go to positional (up to
 * max_positional; more is an error).  Returns 0 to proceed, 1 when --help was
 * printed (exit 0), 2 on a usage error (message printed; exit 2). */
int cli_parse(const char *command, const char *usage, const char *description, const cli_option *opts,
              int argc, char **argv, const char **positional, int max_positional, int *npositional);

/* Print "neurofv COMMAND: message" (the library's error message when msg is
 * NULL) on stderr and return 1: use as `return cli_fail(...)`. */
int cli_fail(const char *command, nfv_status s);
int cli_failf(const char *command, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Progress: a bar with ETA on a terminal, a plain line every `every` seconds
 * otherwise.  done/total in units of work. */
typedef struct cli_progress {
    const char *label;
    double start, last_print;
    int is_tty;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label);
void cli_progress_update(cli_progress *p, long done, long total, const char *extra);
void cli_progress_end(cli_progress *p);

double cli_now(void); /* monotonic seconds */

/* cmd_spectrum.c: store the mean amplitude spectrum of csv's rows in `split`
 * (train, val, test, all; NULL = train) in the model file at model_path (for
 * --param maco), rewritten atomically; *used (may be NULL) = subjects. */
nfv_status cli_model_spectrum(const char *model_path, const char *csv, const char *split, const char *device,
                              int *used);

#endif
