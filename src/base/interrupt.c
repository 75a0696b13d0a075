/* SIGINT/SIGTERM as a flag checked at safe points; see interrupt.h. */
#include "base/interrupt.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t received;

static void on_signal(int sig)
{
    received = sig;
    /* A second signal of this kind takes the default action (terminate). */
    signal(sig, SIG_DFL);
}

void nfv_interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void nfv_interrupt_reset(void)
{
    received = 0;
    nfv_interrupt_install();
}

int nfv_interrupted(void) { return (int)received; }

nfv_status nfv_interrupt_check(const char *where, ...)
{
    int sig = (int)received;
    if (!sig) return NFV_OK;
    char buf[512];
    va_list ap;
    va_start(ap, where);
    vsnprintf(buf, sizeof buf, where, ap);
    va_end(ap);
    return nfv_fail(NFV_ERR_INTERRUPTED, "interrupted by %s %s; nothing partial was written",
                    sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal", buf);
}
