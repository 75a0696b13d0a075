/* neurofv: the command dispatcher.  Commands live in src/cli/cmd_*.c. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/interrupt.h"
#include "cli.h"
#include "neurofv/dist.h"

#undef NFV_COMMAND
#define NFV_COMMAND(fn, name, summary) int cmd_##fn(int argc, char **argv);
#include "command_list.h"
#undef NFV_COMMAND

static const struct {
    const char *name, *summary;
    int (*fn)(int, char **);
} commands[] = {
#define NFV_COMMAND(fn, name, summary) {name, summary, cmd_##fn},
#include "command_list.h"
#undef NFV_COMMAND
};

static void usage(FILE *f)
{
    fprintf(f, "usage: neurofv COMMAND [options]   (neurofv COMMAND --help for its options)\n\n"
               "Train 3D CNNs on brain MRI and visualize what their units learned.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nDevice: --device gpu|cpu|P:D|NAME or NEUROFV_DEVICE (default: first GPU, else the CPU).\n");
}

/* Commands that split their work over MPI ranks (a build with MPI=1 under
 * mpirun); the others run on rank 0 alone while the rest wait, so two ranks
 * never write the same file. */
static int distributed(const char *name)
{
    static const char *const names[] = {"train", "eval", "visualize", "compare", "explain", "devices", "bench"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return 1;
    return 0;
}

/* One command under MPI: a failure on any rank stops every rank with that
 * rank's message (nfv_dist_abort), never a hang in a collective. */
static int run_command(int (*fn)(int, char **), const char *name, int argc, char **argv)
{
    nfv_status s = nfv_dist_init(&argc, &argv);
    if (s) {
        fprintf(stderr, "neurofv: %s\n", nfv_error_message());
        return 1;
    }
    /* Rank 0 reports; the others keep only stderr, for errors (and
     * `devices`, whose point is each rank's line). */
    if (nfv_dist_rank() != 0 && strcmp(name, "devices") && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "neurofv: rank %d: cannot silence stdout\n", nfv_dist_rank());
        return 1;
    }
    int rc = 0;
    if (distributed(name) || nfv_dist_rank() == 0) rc = fn(argc - 1, argv + 1);
    if (rc != 0 && nfv_dist_size() > 1) {
        char msg[600];
        snprintf(msg, sizeof msg, "neurofv %s failed (exit %d): %s", name, rc, nfv_error_message());
        nfv_dist_abort(rc, msg);
    }
    nfv_dist_finalize();
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    /* SIGINT/SIGTERM stop long commands at their next safe point with a
     * message saying where (base/interrupt.h). */
    nfv_interrupt_install();
    /* Past a file-size limit (ulimit -f, a quota) a write should fail with
     * EFBIG and be reported like a full disk, not kill the process. */
    signal(SIGXFSZ, SIG_IGN);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return run_command(commands[i].fn, commands[i].name, argc, argv);
    fprintf(stderr, "neurofv: unknown command \"%s\" (see neurofv --help)\n", argv[1]);
    return 2;
}
