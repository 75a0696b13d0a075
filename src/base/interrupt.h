/* Stopping cleanly on SIGINT and SIGTERM.
 *
 * A cluster pre-empting a job sends SIGTERM, a user presses Ctrl-C.  The
 * handlers only record the signal; long loops (training batches,
 * visualization steps, compare items, synth subjects) call
 * nfv_interrupt_check at points where no file is half written, and return
 * the NFV_ERR_INTERRUPTED it gives, whose message says where they stopped.
 * Every file is written atomically (base/fs.h), so nothing partial remains;
 * a second signal of the same kind kills the process at once (the default
 * action is restored after the first). */
#ifndef NEUROFV_BASE_INTERRUPT_H
#define NEUROFV_BASE_INTERRUPT_H

#include "neurofv/status.h"

/* Installs the SIGINT and SIGTERM handlers (idempotent). */
void nfv_interrupt_install(void);

/* Forgets a received signal and reinstalls the handlers (a library user
 * that handled the interruption and goes on; the tests). */
void nfv_interrupt_reset(void);

/* The signal received since installation (SIGINT, SIGTERM), else 0. */
int nfv_interrupted(void);

/* NFV_OK, or NFV_ERR_INTERRUPTED with "interrupted by SIGTERM <where>" when
 * a signal arrived; where is printf-formatted ("during epoch 3, batch 7"). */
nfv_status nfv_interrupt_check(const char *where, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif
