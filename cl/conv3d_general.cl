/* Conv3d with dilation and groups: forward, backward to the input, backward
 * to the weights, one output element per work-item, every shape passed at run
 * time (one build serves all shapes).  src/layers/conv3d_general.c runs them
 * when dilation or groups differ from 1; the plain conv keeps the fast and
 * reference kernels of cl/conv3d.cl.
 *
 * Tensors are row-major: x (N, CI, D, H, W), w (CO, CI/G, KD, KH, KW),
 * y (N, CO, DO, HO, WO).  Input channel group g (channels g*CI/G ..
 * (g+1)*CI/G - 1) feeds output channel group g (g*CO/G .. (g+1)*CO/G - 1).
 * Tap k along an axis reads input position o*stride - pad + k*dilation.
 *
 * s = (N, CI, D, H, W, CO, DO, HO, WO, KD, KH, KW, SD, SH, SW, has_bias),
 * q = (PD, PH, PW, DD, DH, DW, G, unused), as the *_ref kernels' s and p. */

/* y (N, CO, DO, HO, WO): one output element per work-item. */
__kernel void conv3d_fwd_general(__global const float *x, __global const float *w, __global const float *b,
                                 __global float *y, int16 s, int8 q)
{
    const long i = get_global_id(0);
    const long total = (long)s.s0 * s.s5 * s.s6 * s.s7 * s.s8;
    if (i >= total) return;
    const int ox = (int)(i % s.s8);
    const int oh = (int)((i / s.s8) % s.s7);
    const int od = (int)((i / ((long)s.s8 * s.s7)) % s.s6);
    const int co = (int)((i / ((long)s.s8 * s.s7 * s.s6)) % s.s5);
    const int n = (int)(i / ((long)s.s8 * s.s7 * s.s6 * s.s5));
    const int cig = s.s1 / q.s6, cog = s.s5 / q.s6, ci0 = (co / cog) * cig;
    float acc = s.sf ? b[co] : 0.0f;
    for (int cl = 0; cl < cig; cl++)
        for (int kd = 0; kd < s.s9; kd++) {
            const int d = od * s.sc - q.s0 + kd * q.s3;
            if (d < 0 || d >= s.s2) continue;
            for (int kh = 0; kh < s.sa; kh++) {
                const int h = oh * s.sd - q.s1 + kh * q.s4;
                if (h < 0 || h >= s.s3) continue;
                for (int kw = 0; kw < s.sb; kw++) {
                    const int xx = ox * s.se - q.s2 + kw * q.s5;
                    if (xx < 0 || xx >= s.s4) continue;
                    acc += w[(((long)co * cig + cl) * s.s9 + kd) * s.sa * s.sb + kh * s.sb + kw] *
                           x[((((long)n * s.s1 + ci0 + cl) * s.s2 + d) * s.s3 + h) * s.s4 + xx];
                }
            }
        }
    y[i] = acc;
}

/* dx (N, CI, D, H, W): one input element per work-item, summing every
 * (co of its group, tap) whose dilated window covers it. */
__kernel void conv3d_bwd_input_general(__global const float *dy, __global const float *w, __global float *dx,
                                       int16 s, int8 q)
{
    const long i = get_global_id(0);
    const long total = (long)s.s0 * s.s1 * s.s2 * s.s3 * s.s4;
    if (i >= total) return;
    const int xx = (int)(i % s.s4);
    const int h = (int)((i / s.s4) % s.s3);
    const int d = (int)((i / ((long)s.s4 * s.s3)) % s.s2);
    const int ci = (int)((i / ((long)s.s4 * s.s3 * s.s2)) % s.s1);
    const int n = (int)(i / ((long)s.s4 * s.s3 * s.s2 * s.s1));
    const int cig = s.s1 / q.s6, cog = s.s5 / q.s6, grp = ci / cig, cl = ci - grp * cig;
    float acc = 0.0f;
    for (int co = grp * cog; co < (grp + 1) * cog; co++)
        for (int kd = 0; kd < s.s9; kd++) {
            const int td = d + q.s0 - kd * q.s3; /* = od * SD */
            if (td < 0 || td % s.sc || td / s.sc >= s.s6) continue;
            for (int kh = 0; kh < s.sa; kh++) {
                const int th = h + q.s1 - kh * q.s4;
                if (th < 0 || th % s.sd || th / s.sd >= s.s7) continue;
                for (int kw = 0; kw < s.sb; kw++) {
                    const int tw = xx + q.s2 - kw * q.s5;
                    if (tw < 0 || tw % s.se || tw / s.se >= s.s8) continue;
                    acc += w[(((long)co * cig + cl) * s.s9 + kd) * s.sa * s.sb + kh * s.sb + kw] *
                           dy[((((long)n * s.s5 + co) * s.s6 + td / s.sc) * s.s7 + th / s.sd) * s.s8 + tw / s.se];
                }
            }
        }
    dx[i] = acc;
}

/* dw (CO, CI/G, KD, KH, KW): one weight per work-item, summing over N and
 * every output position. */
__kernel void conv3d_bwd_weights_general(__global const float *x, __global const float *dy, __global float *dw,
                                         int16 s, int8 q)
{
    const long i = get_global_id(0);
    const long kvol = (long)s.s9 * s.sa * s.sb;
    const int cig = s.s1 / q.s6, cog = s.s5 / q.s6;
    if (i >= (long)s.s5 * cig * kvol) return;
    const int kw = (int)(i % s.sb);
    const int kh = (int)((i / s.sb) % s.sa);
    const int kd = (int)((i / ((long)s.sb * s.sa)) % s.s9);
    const int cl = (int)((i / kvol) % cig);
    const int co = (int)(i / (kvol * cig));
    const int ci = (co / cog) * cig + cl;
    float acc = 0.0f;
    for (int n = 0; n < s.s0; n++)
        for (int od = 0; od < s.s6; od++) {
            const int d = od * s.sc - q.s0 + kd * q.s3;
            if (d < 0 || d >= s.s2) continue;
            for (int oh = 0; oh < s.s7; oh++) {
                const int h = oh * s.sd - q.s1 + kh * q.s4;
                if (h < 0 || h >= s.s3) continue;
                for (int ox = 0; ox < s.s8; ox++) {
                    const int xx = ox * s.se - q.s2 + kw * q.s5;
                    if (xx < 0 || xx >= s.s4) continue;
                    acc += dy[((((long)n * s.s5 + co) * s.s6 + od) * s.s7 + oh) * s.s8 + ox] *
                           x[((((long)n * s.s1 + ci) * s.s2 + d) * s.s3 + h) * s.s4 + xx];
                }
            }
        }
    dw[i] = acc;
}
