/* Host random number generators and the FNV-1a hash; see rng.h. */
#include "base/rng.h"

#include <math.h>

uint64_t nfv_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

unsigned long long nfv_hash64(const void *data, size_t n, unsigned long long h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

uint64_t nfv_mix64(uint64_t x) { return nfv_splitmix64(&x); }

double nfv_uniform01(uint64_t *state) { return (double)(nfv_splitmix64(state) >> 11) * (1.0 / 9007199254740992.0); }

void nfv_rng_seed(nfv_rng *r, uint64_t seed, uint64_t stream, uint64_t index)
{
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ULL) ^ (index * 0x8CB92BA72F3D8DD7ULL);
    for (int i = 0; i < 4; i++) r->s[i] = nfv_splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nfv_rng_next(nfv_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double nfv_rng_uniform(nfv_rng *r) { return (double)(nfv_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double nfv_rng_range(nfv_rng *r, double lo, double hi) { return lo + (hi - lo) * nfv_rng_uniform(r); }

int nfv_rng_below(nfv_rng *r, int n) { return (int)(nfv_rng_uniform(r) * n) % n; }

double nfv_rng_normal(nfv_rng *r)
{
    double u = nfv_rng_uniform(r), v = nfv_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}
