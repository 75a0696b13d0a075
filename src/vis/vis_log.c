/* The record the loop keeps of each sample (vis_log in vis_internal.h): the
 * objective at every logged step and the weighted penalty terms at some. */
#include <stdlib.h>
#include <string.h>

#include "vis/vis_internal.h"

nfv_status vis_log_push(vis_log *lg, int step, float obj)
{
    if (lg->count == lg->cap) {
        int nc = lg->cap ? lg->cap * 2 : 64;
        int *s = realloc(lg->step, (size_t)nc * sizeof *s);
        if (!s) return nfv_fail(NFV_ERR_NO_MEMORY, "objective log: out of memory");
        lg->step = s;
        float *f = realloc(lg->objective, (size_t)nc * sizeof *f);
        if (!f) return nfv_fail(NFV_ERR_NO_MEMORY, "objective log: out of memory");
        lg->objective = f;
        lg->cap = nc;
    }
    lg->step[lg->count] = step;
    lg->objective[lg->count++] = obj;
    return NFV_OK;
}

nfv_status vis_log_terms(vis_log *lg, int step, float l1, float l2, float tv)
{
    int n = lg->term_count + 1;
    int *s = realloc(lg->term_step, (size_t)n * sizeof *s);
    if (!s) return nfv_fail(NFV_ERR_NO_MEMORY, "term log: out of memory");
    lg->term_step = s;
    float **arrs[3] = {&lg->l1, &lg->l2, &lg->tv};
    float vals[3] = {l1, l2, tv};
    for (int k = 0; k < 3; k++) {
        float *p = realloc(*arrs[k], (size_t)n * sizeof *p);
        if (!p) return nfv_fail(NFV_ERR_NO_MEMORY, "term log: out of memory");
        *arrs[k] = p;
        p[n - 1] = vals[k];
    }
    lg->term_step[n - 1] = step;
    lg->term_count = n;
    return NFV_OK;
}

void vis_log_free(vis_log *lg)
{
    free(lg->step);
    free(lg->objective);
    free(lg->term_step);
    free(lg->l1);
    free(lg->l2);
    free(lg->tv);
    free(lg->image);
    free(lg->change);
    free(lg->importance);
    for (int s = 0; s < NFV_VIS_MAX_SNAPSHOTS; s++) free(lg->snap[s]);
    memset(lg, 0, sizeof *lg);
}
