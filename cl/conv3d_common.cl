/* The prelude of the conv3d programs (cl/conv3d.cl: forward and input
 * gradient; cl/conv3d_wgrad.cl: weight and bias gradients), included by
 * both: the tunables and shape constants every fast kernel is compiled
 * with (-D), the padded geometry, and REP, which writes accumulators out as
 * named variables.
 *
 * Tensors are row-major: x (N, CI, D, H, W), w (CO, CI, KD, KH, KW),
 * y (N, CO, DO, HO, WO). */
#ifndef NFV_CONV3D_COMMON_CL
#define NFV_CONV3D_COMMON_CL

/* ---- tunables and shape constants (overridden with -D) ------------------ */
#ifndef VEC
#define VEC 16          /* floats per work-item along x: 16 AVX-512, 8 AVX2, 4 GPU */
#endif
#include "common.cl"
#ifndef COB
#define COB 8           /* output channels per work-item (forward) */
#endif
#ifndef ROWS
#define ROWS 1          /* output rows (h) per work-item (forward): 1-4 */
#endif
#ifndef KD_UNROLL
#define KD_UNROLL 1     /* 1: the forward kernels unroll all KD*KH*KW taps; 0: they keep the
                         * kd loop, so the compiler cannot hoist every tap's loads at once
                         * and spill accumulators (nfv_kernel_config.conv_unroll) */
#endif
#ifndef OUT_RELU
#define OUT_RELU 0      /* 1: the forward stores max(y, 0) (eval-mode conv + BN + ReLU fusion) */
#endif
#ifndef BW_COB
#define BW_COB 8        /* output channels per work-item (weight gradient) */
#endif
#ifndef CI
#define CI 1            /* input channels */
#endif
#ifndef CO
#define CO 8            /* output channels */
#endif
#ifndef KD
#define KD 3
#endif
#ifndef KH
#define KH 3
#endif
#ifndef KW
#define KW 3
#endif
#ifndef SD
#define SD 1            /* strides along d and h (x stride is 1 in the fast kernels) */
#endif
#ifndef SH
#define SH 1
#endif
#ifndef ID
#define ID 8            /* unpadded input D, H, W */
#endif
#ifndef IH
#define IH 8
#endif
#ifndef IW
#define IW 8
#endif
#ifndef PD
#define PD 1            /* zero padding before (and after) along d, h, w */
#endif
#ifndef PH
#define PH 1
#endif
#ifndef PW
#define PW 1
#endif
#ifndef DO
#define DO 8            /* output D, H, W */
#endif
#ifndef HO
#define HO 8
#endif
#ifndef WO
#define WO 8
#endif

#define DP (ID + 2 * PD)     /* padded input D, H, W */
#define HP (IH + 2 * PH)
#define WP (IW + 2 * PW)
#define KVOL (KD * KH * KW)
#define HOB ((HO + ROWS - 1) / ROWS)

/* Repeat M(c) for c = 0 .. n-1 (n <= 16, a compile-time constant). */
#define REP1(M) M(0)
#define REP2(M) REP1(M) M(1)
#define REP3(M) REP2(M) M(2)
#define REP4(M) REP3(M) M(3)
#define REP5(M) REP4(M) M(4)
#define REP6(M) REP5(M) M(5)
#define REP7(M) REP6(M) M(6)
#define REP8(M) REP7(M) M(7)
#define REP9(M) REP8(M) M(8)
#define REP10(M) REP9(M) M(9)
#define REP11(M) REP10(M) M(10)
#define REP12(M) REP11(M) M(11)
#define REP13(M) REP12(M) M(12)
#define REP14(M) REP13(M) M(13)
#define REP15(M) REP14(M) M(14)
#define REP16(M) REP15(M) M(15)
#define REP(n, M) NFV_CAT(REP, n)(M)

#endif
