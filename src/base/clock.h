/* Wall-clock time for step timings, estimates and benchmarks. */
#ifndef NEUROFV_BASE_CLOCK_H
#define NEUROFV_BASE_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): differences are elapsed
 * time, unaffected by changes to the system clock; the origin is arbitrary. */
double nfv_seconds(void);

/* Sorts v[0..n) ascending in place and returns its median (the mean of the
 * two middle values for even n; 0 for n <= 0): benchmark repetitions. */
double nfv_median_sort(double *v, int n);

#endif
