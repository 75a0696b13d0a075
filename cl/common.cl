/* Kernel prelude shared by the cl/ files: VEC-wide vector types, loads and
 * stores, lane numbers, gathers and the flat block decomposition.
 *
 * A kernel file sets its default VEC (floats per vector: 16 on AVX-512, 8 on
 * AVX2, 4 on GPUs; the host passes -DVEC=<device width>) and then does
 * #include "common.cl".  tools/embed-cl.sh pastes this file in place of that
 * line, so the device gets one self-contained source per program (and the
 * binary cache key, a hash of that source, changes when this file does);
 * standalone, the files compile with clang -x cl -Icl (make check-cl).
 * Without VEC (pool.cl's geometry-only variants) only NFV_CAT is defined. */
#ifndef NFV_COMMON_CL
#define NFV_COMMON_CL

#define NFV_CAT_(a, b) a##b
#define NFV_CAT(a, b) NFV_CAT_(a, b)

/* MAC(a, b, c) = a * b + c for the hot loops.  mad() lets the compiler
 * choose, and PoCL's CPU compiler (LLVM 15) emits a multiply and an add:
 * twice the instructions of one FMA.  With fma, bench-kernels' fastest of
 * 10 runs, two alternating rounds: the weight gradients 20-27 % faster
 * (conv3 2.48/2.40 -> 1.76/1.76 ms), conv1's 1-channel input gradient
 * 8.0/7.1 -> 5.9/6.5 ms, the wide forwards 5-10 %.  Where
 * the device does fused multiply-add in hardware (CL_FP_FMA without
 * CL_FP_SOFT_FLOAT: the host passes -DNFV_FMA=1; or the OpenCL C macro
 * FP_FAST_FMAF, which PoCL does not define) take fma; elsewhere it may be
 * emulated in software, so keep mad. */
#if defined(FP_FAST_FMAF) || (defined(NFV_FMA) && NFV_FMA)
#define MAC(a, b, c) fma((a), (b), (c))
#else
#define MAC(a, b, c) mad((a), (b), (c))
#endif

#ifdef VEC
#define floatv NFV_CAT(float, VEC)
#define intv NFV_CAT(int, VEC)
#define uintv NFV_CAT(uint, VEC)
#define VLOAD NFV_CAT(vload, VEC)
#define VSTORE NFV_CAT(vstore, VEC)
#define convert_floatv NFV_CAT(convert_float, VEC)
#define convert_intv NFV_CAT(convert_int, VEC)

/* LANES: 0, 1, ..., VEC-1 as an intv (lane offsets of a block, masks at the
 * end of a row); LANES_F the same as a floatv (conv3d.cl compares it with a
 * float count).  GATHER(p, i): p[i] for each lane of the intv i (gathers:
 * the corners of a rotated grid, or a clamped block, are not contiguous).
 *
 * Integer min/max/clamp on vectors take vector bounds, (intv)(W - 1), never
 * a scalar W - 1: the scalar-bound overloads are legal OpenCL 1.2, but
 * oclgrind 21.10 evaluates them wrongly (lanes read far outside the row),
 * and the explicit form means the same on every device. */
#if VEC == 2
#define LANES ((int2)(0, 1))
#define LANES_F ((float2)(0, 1))
#define GATHER(p, i) ((float2)((p)[(i).s0], (p)[(i).s1]))
#elif VEC == 4
#define LANES ((int4)(0, 1, 2, 3))
#define LANES_F ((float4)(0, 1, 2, 3))
#define GATHER(p, i) ((float4)((p)[(i).s0], (p)[(i).s1], (p)[(i).s2], (p)[(i).s3]))
#elif VEC == 8
#define LANES ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define LANES_F ((float8)(0, 1, 2, 3, 4, 5, 6, 7))
#define GATHER(p, i)                                                                                               \
    ((float8)((p)[(i).s0], (p)[(i).s1], (p)[(i).s2], (p)[(i).s3], (p)[(i).s4], (p)[(i).s5], (p)[(i).s6],         \
              (p)[(i).s7]))
#elif VEC == 16
#define LANES ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define LANES_F ((float16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define GATHER(p, i)                                                                                               \
    ((float16)((p)[(i).s0], (p)[(i).s1], (p)[(i).s2], (p)[(i).s3], (p)[(i).s4], (p)[(i).s5], (p)[(i).s6],        \
               (p)[(i).s7], (p)[(i).s8], (p)[(i).s9], (p)[(i).sa], (p)[(i).sb], (p)[(i).sc], (p)[(i).sd],        \
               (p)[(i).se], (p)[(i).sf]))
#else
#error "VEC must be 2, 4, 8 or 16"
#endif

/* Kernels on a flat range of N*D*H*ceil(W/VEC) work-items (rounded up to the
 * host's local size, which is given explicitly: PoCL's own choice for some 3D
 * ranges made launches 5-20x slower).  This decodes work-item g into the
 * first x of its block, its row y and plane nz = n*D + z, and returns from
 * work-items past the end. */
#define FLAT_BLOCK(W, H, N, D, x0, y, nz)                                                                          \
    int x0, y, nz;                                                                                                 \
    {                                                                                                              \
        int nb_ = ((W) + VEC - 1) / VEC;                                                                           \
        long g_ = get_global_id(0);                                                                                \
        if (g_ >= (long)nb_ * (H) * (N) * (D)) return;                                                             \
        long r_ = g_ / nb_;                                                                                        \
        x0 = (int)(g_ - r_ * nb_) * VEC;                                                                           \
        nz = (int)(r_ / (H));                                                                                      \
        y = (int)(r_ - (long)nz * (H));                                                                            \
    }

/* Sum of the lanes of v, as a tree (halves added until two lanes are left). */
inline float vsum(floatv v)
{
#if VEC == 16
    const float8 v8 = v.lo + v.hi;
#elif VEC == 8
    const float8 v8 = v;
#endif
#if VEC >= 8
    const float4 v4 = v8.lo + v8.hi;
#elif VEC == 4
    const float4 v4 = v;
#endif
#if VEC >= 4
    const float2 v2 = v4.lo + v4.hi;
#else
    const float2 v2 = v;
#endif
    return v2.x + v2.y;
}

/* Largest lane of v (fmax: a NaN lane is passed over). */
inline float vmaxf(floatv v)
{
#if VEC == 16
    const float8 v8 = fmax(v.lo, v.hi);
#elif VEC == 8
    const float8 v8 = v;
#endif
#if VEC >= 8
    const float4 v4 = fmax(v8.lo, v8.hi);
#elif VEC == 4
    const float4 v4 = v;
#endif
#if VEC >= 4
    const float2 v2 = fmax(v4.lo, v4.hi);
#else
    const float2 v2 = v;
#endif
    return fmax(v2.x, v2.y);
}

/* Store the lanes of v at p[0..VEC), only the first `count` when a row ends
 * inside the block (count <= 0 stores nothing). */
inline void store_lanes(floatv v, __global float *p, int count)
{
    if (count >= VEC) {
        VSTORE(v, 0, p);
    } else {
        float t[VEC];
        VSTORE(v, 0, t);
        for (int i = 0; i < count; i++) p[i] = t[i];
    }
}
#endif /* VEC */

#endif /* NFV_COMMON_CL */
