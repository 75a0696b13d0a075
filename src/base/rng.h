/* The one host random number generator of neurofv.
 *
 * Every random draw on the host (weight initialization, synthetic cohorts,
 * visualization seeds and transforms, training shuffles and augmentation, the
 * tests' random inputs) comes from here, so "same seed, same bytes" rests on
 * one implementation.  Two generators, both public-domain designs by Vigna:
 *
 *   splitmix64   a 64-bit counter through a mixing function; the state is
 *                one integer, so streams are cheap to derive from hashes of
 *                (seed, epoch, target, ...) and need no stored state.
 *   xoshiro256** a long-period generator seeded by splitmix64, for code that
 *                draws many numbers per item (synth's subjects). */
#ifndef NEUROFV_BASE_RNG_H
#define NEUROFV_BASE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Advances *state by the golden-ratio increment and returns its mix. */
uint64_t nfv_splitmix64(uint64_t *state);

/* The splitmix64 output for state x without keeping a state: a 64-bit hash. */
uint64_t nfv_mix64(uint64_t x);

/* Uniform double in [0, 1) from the top 53 bits of the next splitmix64 output. */
double nfv_uniform01(uint64_t *state);

/* 64-bit FNV-1a of n bytes from seed h: program-cache keys and checksums,
 * and the visualization's per-target streams. */
#define NFV_HASH_SEED 1469598103934665603ULL
unsigned long long nfv_hash64(const void *data, size_t n, unsigned long long h);

/* xoshiro256**. */
typedef struct nfv_rng { uint64_t s[4]; } nfv_rng;

/* An independent stream for (seed, stream, index): the three are mixed into
 * one splitmix64 state that fills the four words. */
void nfv_rng_seed(nfv_rng *r, uint64_t seed, uint64_t stream, uint64_t index);
uint64_t nfv_rng_next(nfv_rng *r);
double nfv_rng_uniform(nfv_rng *r);                     /* [0, 1) */
double nfv_rng_range(nfv_rng *r, double lo, double hi); /* [lo, hi) */
int nfv_rng_below(nfv_rng *r, int n);                   /* 0 .. n-1, n > 0 */
double nfv_rng_normal(nfv_rng *r);                      /* N(0, 1), Box-Muller */

#endif
