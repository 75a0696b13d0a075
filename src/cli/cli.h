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

/* The whole run's time from measured steps: feed it (done, total) after each
 * unit; after the first unit (kernel builds) it measures at least
 * CLI_ESTIMATE_UNITS more units and ~0.5 s, then returns 1 once with the
 * seconds per unit and the estimated whole and remaining seconds. */
#define CLI_ESTIMATE_UNITS 3
typedef struct cli_estimate_state {
    double start, first_t;
    long first_done; /* units done at the end of the first (0: not yet) */
    int printed;
} cli_estimate_state;
void cli_estimate_start(cli_estimate_state *e);
int cli_estimate_update(cli_estimate_state *e, long done, long total, double *per_unit, double *whole,
                        double *left);
/* "42 s", "3 min 20 s", "2 h 05 min" into buf. */
const char *cli_duration(double seconds, char *buf, size_t cap);

/* Progress: a bar with ETA on a terminal, a plain line every `every` seconds
 * otherwise.  done/total in units of work.  Once a few units after the first
 * are measured (the first builds kernels and buffers, so it is left out), one
 * line on stderr estimates the whole run from the measured time per unit
 * (cli_estimate). */
typedef struct cli_progress {
    int silent; /* under mpirun, ranks other than 0 print no progress */
    const char *label;
    double start, last_print;
    int is_tty;
    cli_estimate_state est;
    int repeat; /* > 1: the job runs this many such loops; the estimate line also gives their total (1) */
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label);
void cli_progress_update(cli_progress *p, long done, long total, const char *extra);
void cli_progress_end(cli_progress *p);


/* cmd_spectrum.c: store the mean amplitude spectrum of csv's rows in `split`
 * (train, val, test, all; NULL = train) in the model file at model_path (for
 * --param maco), rewritten atomically; *used (may be NULL) = subjects. */
nfv_status cli_model_spectrum(const char *model_path, const char *csv, const char *split, const char *device,
                              int *used);

#endif
