/* Reference Conv3d kernels: forward, backward to the input, to the weights
 * and to the bias, one output element per work-item, every shape passed at
 * run time (one build serves all shapes).  They are the device-side spec the
 * fast kernels of cl/conv3d.cl are tested against (and the host's double
 * reference theirs, tests/test_conv3d.c), and the path for shapes the fast
 * kernels do not cover (x stride != 1, backward-input with stride != 1 or
 * pad > k - 1).  Host side: src/layers/conv3d_ref.c.
 *
 * Tensors are row-major: x (N, CI, D, H, W), w (CO, CI, KD, KH, KW),
 * y (N, CO, DO, HO, WO). */

/* s = (N, CI, D, H, W, CO, DO, HO, WO, KD, KH, KW, SD, SH, SW, has_bias),
 * p = (PD, PH, PW, unused). */

/* y (N, CO, DO, HO, WO): one output element per work-item. */
__kernel void conv3d_fwd_ref(__global const float *x, __global const float *w, __global const float *b,
                             __global float *y, int16 s, int4 p)
{
    const long i = get_global_id(0);
    const long total = (long)s.s0 * s.s5 * s.s6 * s.s7 * s.s8;
    if (i >= total) return;
    const int ox = (int)(i % s.s8);
    const int oh = (int)((i / s.s8) % s.s7);
    const int od = (int)((i / ((long)s.s8 * s.s7)) % s.s6);
    const int co = (int)((i / ((long)s.s8 * s.s7 * s.s6)) % s.s5);
    const int n = (int)(i / ((long)s.s8 * s.s7 * s.s6 * s.s5));
    float acc = s.sf ? b[co] : 0.0f;
    for (int ci = 0; ci < s.s1; ci++)
        for (int kd = 0; kd < s.s9; kd++) {
            const int d = od * s.sc - p.s0 + kd;
            if (d < 0 || d >= s.s2) continue;
            for (int kh = 0; kh < s.sa; kh++) {
                const int h = oh * s.sd - p.s1 + kh;
                if (h < 0 || h >= s.s3) continue;
                for (int kw = 0; kw < s.sb; kw++) {
                    const int xx = ox * s.se - p.s2 + kw;
                    if (xx < 0 || xx >= s.s4) continue;
                    acc += w[(((long)co * s.s1 + ci) * s.s9 + kd) * s.sa * s.sb + kh * s.sb + kw] *
                           x[((((long)n * s.s1 + ci) * s.s2 + d) * s.s3 + h) * s.s4 + xx];
                }
            }
        }
    y[i] = acc;
}

/* dx (N, CI, D, H, W): one input element per work-item, summing every
 * (co, tap) whose window covers it. */
__kernel void conv3d_bwd_input_ref(__global const float *dy, __global const float *w, __global float *dx, int16 s,
                                   int4 p)
{
    const long i = get_global_id(0);
    const long total = (long)s.s0 * s.s1 * s.s2 * s.s3 * s.s4;
    if (i >= total) return;
    const int xx = (int)(i % s.s4);
    const int h = (int)((i / s.s4) % s.s3);
    const int d = (int)((i / ((long)s.s4 * s.s3)) % s.s2);
    const int ci = (int)((i / ((long)s.s4 * s.s3 * s.s2)) % s.s1);
    const int n = (int)(i / ((long)s.s4 * s.s3 * s.s2 * s.s1));
    float acc = 0.0f;
    for (int co = 0; co < s.s5; co++)
        for (int kd = 0; kd < s.s9; kd++) {
            const int td = d + p.s0 - kd; /* = od * SD */
            if (td < 0 || td % s.sc || td / s.sc >= s.s6) continue;
            for (int kh = 0; kh < s.sa; kh++) {
                const int th = h + p.s1 - kh;
                if (th < 0 || th % s.sd || th / s.sd >= s.s7) continue;
                for (int kw = 0; kw < s.sb; kw++) {
                    const int tw = xx + p.s2 - kw;
                    if (tw < 0 || tw % s.se || tw / s.se >= s.s8) continue;
                    acc += w[(((long)co * s.s1 + ci) * s.s9 + kd) * s.sa * s.sb + kh * s.sb + kw] *
                           dy[((((long)n * s.s5 + co) * s.s6 + td / s.sc) * s.s7 + th / s.sd) * s.s8 + tw / s.se];
                }
            }
        }
    dx[i] = acc;
}

/* dw (CO, CI, KD, KH, KW): one weight per work-item, summing over N and every
 * output position. */
__kernel void conv3d_bwd_weights_ref(__global const float *x, __global const float *dy, __global float *dw, int16 s,
                                     int4 p)
{
    const long i = get_global_id(0);
    const long kvol = (long)s.s9 * s.sa * s.sb;
    if (i >= (long)s.s5 * s.s1 * kvol) return;
    const int kw = (int)(i % s.sb);
    const int kh = (int)((i / s.sb) % s.sa);
    const int kd = (int)((i / ((long)s.sb * s.sa)) % s.s9);
    const int ci = (int)((i / kvol) % s.s1);
    const int co = (int)(i / (kvol * s.s1));
    float acc = 0.0f;
    for (int n = 0; n < s.s0; n++)
        for (int od = 0; od < s.s6; od++) {
            const int d = od * s.sc - p.s0 + kd;
            if (d < 0 || d >= s.s2) continue;
            for (int oh = 0; oh < s.s7; oh++) {
                const int h = oh * s.sd - p.s1 + kh;
                if (h < 0 || h >= s.s3) continue;
                for (int ox = 0; ox < s.s8; ox++) {
                    const int xx = ox * s.se - p.s2 + kw;
                    if (xx < 0 || xx >= s.s4) continue;
                    acc += dy[((((long)n * s.s5 + co) * s.s6 + od) * s.s7 + oh) * s.s8 + ox] *
                           x[((((long)n * s.s1 + ci) * s.s2 + d) * s.s3 + h) * s.s4 + xx];
                }
            }
        }
    dw[i] = acc;
}

/* db (CO) = sum of dy over N and every output position; one channel per work-item. */
__kernel void conv3d_bwd_bias_ref(__global const float *dy, __global float *db, int16 s, int4 p)
{
    (void)p;
    const int co = (int)get_global_id(0);
    if (co >= s.s5) return;
    const long plane = (long)s.s6 * s.s7 * s.s8;
    float acc = 0.0f;
    for (int n = 0; n < s.s0; n++)
        for (long j = 0; j < plane; j++) acc += dy[((long)n * s.s5 + co) * plane + j];
    db[co] = acc;
}
