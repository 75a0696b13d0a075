#!/usr/bin/env python3
"""Per configuration of `compare --score mis` runs: classes recovered, seeds
with every class, mean margin, pooled MIS with its Wilson interval, and the
targets with a margin above 0.05; the Spearman rank correlation of MIS and
of the focus share with concept recovery over configuration x seed runs;
the stretch per class.

With several DIRs (cohorts), also the rank correlation pooled over them: a
cohort's 36 runs leave a correlation of 0.3 at p 0.09, so whether MIS ranks
runs by recovery needs more runs than one cohort has.  Two pooled figures:
the fixed-effect mean of the cohorts' Fisher-z Spearman coefficients
(variance 1.06 / (n - 3), Fieller, Hartley & Pearson 1957) with its 95 %
interval, and Spearman over all runs of the within-cohort ranks (MIS and
recovery each ranked inside its cohort, as fractions of its run count, so
that cohorts of different levels are not compared with each other).

Usage: tools/mis_recovery.py DIR... (each DIR/results.csv or
DIR/cmp/results.csv: a compare --out folder)."""
import csv, sys, math, os
from collections import defaultdict
from scipy.stats import spearmanr, rankdata, norm
pooled = []  # per cohort: (name, MIS per run, classes recovered per run)
for name in sys.argv[1:]:
    path = f'{name}/results.csv' if os.path.exists(f'{name}/results.csv') else f'{name}/cmp/results.csv'
    rows = list(csv.DictReader(open(path)))
    print(f'== {name}')
    by = defaultdict(list)
    for r in rows: by[(r['config'], r['seed'])].append(r)
    cfgs = []
    for r in rows:
        if r['config'] not in cfgs: cfgs.append(r['config'])
    print('config | classes recovered | logit every class (seeds) | contrast every class | mean margin | margin > 0.05 | MIS pooled [Wilson] | MIS plain | MIS act | focus share')
    xs, ys = [], []
    for c in cfgs:
        rr = [r for r in rows if r['config']==c]
        rec = sum(int(r['recovered']) for r in rr)
        fam = {}
        for fam_name in ('logit','contrast'):
            n=0
            for s in sorted(set(r['seed'] for r in rr)):
                sub=[r for r in rr if r['seed']==s and r['target'].startswith(fam_name+':')]
                n += all(int(r['recovered']) for r in sub)
            fam[fam_name]=n
        k = sum(float(r['mis'])*int(r['mis_pairs']) for r in rr); n = sum(int(r['mis_pairs']) for r in rr)
        p=k/n; z=1.959964; den=1+z*z/n; cen=(p+z*z/(2*n))/den; h=z*math.sqrt(p*(1-p)/n+z*z/(4*n*n))/den
        ma = sum(float(r['mis_act']) for r in rr)/len(rr)
        mm = sum(float(r['margin']) for r in rr)/len(rr)
        clear = sum(float(r['margin']) > 0.05 for r in rr)
        mp = sum(float(r.get('mis_plain') or 'nan') for r in rr)/len(rr)
        fs = [float(r['focus_share']) for r in rr if r.get('focus_share')]
        mf = sum(fs)/len(fs) if fs else float('nan')
        print(f'{c} | {rec}/{len(rr)} | {fam["logit"]}/3 | {fam["contrast"]}/3 | {mm:+.3f} | {clear}/{len(rr)} | {p:.3f} [{cen-h:.3f}, {cen+h:.3f}] | {mp:.3f} | {ma:.3f} | {mf:.3f}')
    for (c,s), rr in by.items():
        xs.append(sum(float(r['mis']) for r in rr)/len(rr)); ys.append(sum(int(r['recovered']) for r in rr))
    rho, pv = spearmanr(xs, ys)
    print(f'Spearman(MIS, classes recovered) over {len(xs)} config x seed runs: rho {rho:.3f} (p {pv:.2f})')
    pooled.append((name, xs, ys))
    if 'mis_voxel' in rows[0]:
        xv = [sum(float(r['mis_voxel']) for r in rr)/len(rr) for rr in by.values()]
        print(f'  voxel term alone: rho {spearmanr(xv, ys)[0]:.3f}')
    xa = [sum(float(r['mis_act']) for r in rr)/len(rr) for rr in by.values()]
    print(f'  feature term alone: rho {spearmanr(xa, ys)[0]:.3f}')
    if 'mis_plain' in rows[0]:
        xp = [sum(float(r['mis_plain']) for r in rr)/len(rr) for rr in by.values()]
        print(f'  plain (not contrastive): rho {spearmanr(xp, ys)[0]:.3f}')
    if 'focus_share' in rows[0]:
        def mean_focus(rr):
            fs = [float(r['focus_share']) for r in rr if r['focus_share']]
            return sum(fs)/len(fs) if fs else 0.0
        xf = [mean_focus(rr) for rr in by.values()]
        rho, pv = spearmanr(xf, ys)
        print(f'Spearman(focus share, classes recovered) over {len(xf)} runs: rho {rho:.3f} (p {pv:.2f})')
        # A run recovers above chance when at least 5 of its 6 targets (3
        # shapes: chance 1/3 each, P(>= 5 of 6) = 0.018) find their own shape.
        for label, x in (('MIS', xs), ('focus share', xf)):
            hit = [v for v, y in zip(x, ys) if y >= 5 * len(rows) / len(by) / 6]
            miss = [v for v, y in zip(x, ys) if y < 5 * len(rows) / len(by) / 6]
            if hit and miss:
                auc = sum((a > b) + 0.5 * (a == b) for a in hit for b in miss) / (len(hit) * len(miss))
                print(f'  {label}: AUC {auc:.3f} for the {len(hit)} runs recovering >= 5/6 of their targets vs the {len(miss)} others')
    # per row
    rho2 = spearmanr([float(r['mis']) for r in rows],[int(r['recovered']) for r in rows])[0]
    print(f'  per target row ({len(rows)}): rho {rho2:.3f}')
    # The stretch (objective past the cohort, 1 = the strongest subject):
    # per target class, the median over configurations and seeds, and the
    # share recovered; a class whose pictures stay near 1 could not be driven
    # past real subjects, so its picture shows no more than a subject does.
    if 'stretch' in rows[0]:
        import statistics
        classes = []
        for r in rows:
            if r['truth_class'] and r['truth_class'] not in classes: classes.append(r['truth_class'])
        for fam in ('logit', 'contrast'):
            parts = []
            for c in classes:
                rr = [r for r in rows if r['truth_class'] == c and r['target'].startswith(fam + ':') and r['stretch']]
                if rr:
                    med = statistics.median(float(r['stretch']) for r in rr)
                    parts.append(f'{c} {med:.3g} ({sum(int(r["recovered"]) for r in rr)}/{len(rr)} recovered)')
            if parts: print(f'stretch, median per class, {fam}: ' + ', '.join(parts))
        st = [(float(r['stretch']), int(r['recovered'])) for r in rows if r['stretch']]
        if st:
            rho, pv = spearmanr([a for a, _ in st], [b for _, b in st])
            print(f'Spearman(stretch, recovered) over {len(st)} target rows: rho {rho:.3f} (p {pv:.2g})')

if len(pooled) > 1:
    zs, ws, mis_ranks, rec_ranks = [], [], [], []
    for name, xs, ys in pooled:
        rho = spearmanr(xs, ys)[0]
        if len(xs) < 4 or not math.isfinite(rho):
            print(f'pooled: {name} left out ({len(xs)} runs, rho {rho})')
            continue
        zs.append(math.atanh(max(-0.999999, min(0.999999, rho))))
        ws.append((len(xs) - 3) / 1.06)
        mis_ranks += list(rankdata(xs) / len(xs))
        rec_ranks += list(rankdata(ys) / len(ys))
    if len(zs) > 1:
        z = sum(a * w for a, w in zip(zs, ws)) / sum(ws)
        se = 1 / math.sqrt(sum(ws))
        print(f'pooled over {len(zs)} cohorts ({len(mis_ranks)} runs): fixed-effect Spearman(MIS, classes recovered) '
              f'{math.tanh(z):+.3f} [95 % {math.tanh(z - 1.96 * se):+.3f}, {math.tanh(z + 1.96 * se):+.3f}], '
              f'p {2 * norm.sf(abs(z / se)):.2g}; positive in {sum(a > 0 for a in zs)} of {len(zs)}')
        rho, pv = spearmanr(mis_ranks, rec_ranks)
        print(f'  within-cohort ranks, all runs: rho {rho:+.3f} (p {pv:.2g})')
