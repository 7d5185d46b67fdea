"""How well each score tells right pseudo-labels from wrong on the target: the adapted teacher's metric reliability,
its softmax confidence and its (negated) entropy, pooled over every pixel of the target's evaluation split.

    .venv/bin/python benchmarks/reliability_auroc.py RUN_DIR [RUN_DIR ...] [--max-images N] [--out results/reliability_auroc]

Each RUN_DIR is a finished STvM run (teacher.pt, metric.pt, metrics.json). Writes OUT.md and OUT.json: one row per run
and score (AUROC, mean score over right and over wrong pseudo-labels), plus the mean over runs.

Variants of the metric reliability that need no retraining are scored beside it, as ablations (never defaults): the product
metric x confidence, and the trained metric network read at other temperatures tau (`--taus`; the runs used 0.1).
"""
import argparse, json, time
from pathlib import Path
import numpy as np
import pandas as pd
from sfda_nb import data, experiments, viz
from sfda_nb.core import default_data_root

def run_scores(run_dir:Path, max_images:int, taus=()):
    "Pooled flat scores and correctness of one run's teacher on its target's evaluation split (and the metric's variants)."
    m = json.loads((run_dir/'metrics.json').read_text()); cfg = m['config']
    preds = viz.Predictions.from_run(run_dir, device='cpu')
    at_tau = {t: viz.Predictions.from_run(run_dir, device='cpu') for t in taus}
    for t, pr in at_tau.items(): pr.reliability.learner.tau = t  # the same trained metric network, read at another temperature
    root = Path(cfg['data_root']) if cfg.get('data_root') else default_data_root()
    ds = data.get_dataset(cfg['target'], data.eval_split(cfg['target']), root=root, protocol=m['protocol'], mode='eval')
    keep = {'metric reliability': [], 'softmax confidence': [], '1 - normalised entropy': [], 'metric x confidence (ablation)': [],
            **{f'metric reliability at tau {t} (ablation)': [] for t in taus}}; ok = []; cls = {'pseudo': [], 'label': []}
    for i in range(min(len(ds), max_images) if max_images else len(ds)):
        p = preds.get(ds, i); v = p.label != 255
        keep['metric reliability'].append(p.rel[v]); keep['softmax confidence'].append(p.conf[v])
        keep['1 - normalised entropy'].append(1 - p.entropy[v]); ok.append((p.pseudo == p.label)[v])
        cls['pseudo'].append(p.pseudo[v]); cls['label'].append(p.label[v])
        keep['metric x confidence (ablation)'].append(p.rel[v] * p.conf[v])
        for t, pr in at_tau.items(): keep[f'metric reliability at tau {t} (ablation)'].append(pr.get(ds, i).rel[v])
    return {k: np.concatenate(v) for k, v in keep.items()}, np.concatenate(ok), m, {k: np.concatenate(v) for k, v in cls.items()}

def per_class(scores:dict, ok, cls:dict, names, threshold:float=0.968) -> pd.DataFrame:
    "Per pseudo-label class: its share of pixels and of the loss weight each score gives, and how much of the class it keeps."
    rel, conf = scores['metric reliability'].astype(np.float64), scores['softmax confidence'].astype(np.float64)
    pseudo, label = cls['pseudo'], cls['label']
    rows = []
    for c, name in enumerate(names):
        m, g = pseudo == c, label == c
        rows.append({'class': name, 'pixels (ground truth) %': 100 * g.mean(), 'pseudo-label precision %': 100 * ok[m].mean() if m.any() else np.nan,
                     'mean metric reliability': rel[m].mean() if m.any() else np.nan, 'mean confidence': conf[m].mean() if m.any() else np.nan,
                     'share of metric weight %': 100 * rel[m].sum() / rel.sum(), 'share of pixels (pseudo) %': 100 * m.mean(),
                     'recall, metric ≥ 0.5 %': 100 * (g & m & (rel >= 0.5)).sum() / max(g.sum(), 1),
                     f'recall, confidence ≥ {threshold} %': 100 * (g & m & (conf >= threshold)).sum() / max(g.sum(), 1)})
    return pd.DataFrame(rows)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('runs', nargs='+'); ap.add_argument('--max-images', type=int, default=0)
    ap.add_argument('--taus', default='0.03,0.3', help='other temperatures to read the metric network at (ablation rows; empty: none)')
    ap.add_argument('--out', default=str(Path(__file__).resolve().parents[1]/'results'/'reliability_auroc'))
    a = ap.parse_args(); rows, classes = [], []
    for r in map(Path, a.runs):
        scores, ok, m, cls = run_scores(r, a.max_images, [float(t) for t in a.taus.split(',') if t])
        classes.append(per_class(scores, ok, cls, data.get_protocol(m['protocol']).class_names))
        t = viz.auroc_table(scores, ok).reset_index()
        t.insert(0, 'run', r.parent.name if r.name == 'out' else r.name); t.insert(1, 'seed', m['seed']); t['pseudo-label accuracy'] = ok.mean()
        rows.append(t); print(t.to_string(index=False), flush=True)
    df = pd.concat(rows, ignore_index=True)
    mean = df.groupby('score', sort=False)[['auroc', 'mean | right', 'mean | wrong']].agg(['mean', 'std'])
    cfg = json.loads((Path(a.runs[0])/'metrics.json').read_text())['config']
    head = (f"# Reliability AUROC of the adapted STvM teacher\n\n{cfg['source']} → {cfg['target']}, {len(a.runs)} run(s) "
            f"(seeds {sorted(df.seed.unique().tolist())}), every labelled pixel of the target's evaluation split"
            f"{f' (first {a.max_images} images)' if a.max_images else ''}. AUROC of each score at telling a right pseudo-label "
            f"from a wrong one (0.5 = uninformative). Written {time.strftime('%Y-%m-%d')} by `python benchmarks/reliability_auroc.py`.\n")
    body = ['| score | AUROC (mean ± std over runs) | mean score, right | mean score, wrong |', '| --- | --- | --- | --- |']
    for s, r in mean.iterrows():
        body.append(f"| {s} | {r[('auroc', 'mean')]:.3f} ± {np.nan_to_num(r[('auroc', 'std')]):.3f} | {r[('mean | right', 'mean')]:.3f} | {r[('mean | wrong', 'mean')]:.3f} |")
    pc = pd.concat(classes).groupby('class', sort=False).mean()
    pc = pc.round({c: 3 if c.startswith('mean ') else 1 for c in pc.columns})
    pc_head = ("\n\nPer pseudo-label class (mean over runs): the class's share of the labelled pixels, the precision of its "
               "pseudo-labels, the mean weight each score gives them, its share of the metric reliability's total weight against "
               "its share of the pseudo-labels, and the share of the class's pixels a per-pixel cut keeps with the right label "
               "(metric reliability ≥ 0.5; confidence ≥ 0.968, DACS's threshold). A class whose pixels the weighting keeps little "
               "of is one the student is not taught.\n\n")
    Path(a.out + '.md').write_text(head + '\n' + '\n'.join(body) + pc_head + experiments.to_markdown(pc)
                                   + '\n\nPer run:\n\n' + experiments.to_markdown(df.round(3).set_index('run')) + '\n')
    Path(a.out + '.json').write_text(json.dumps({'runs': [str(r) for r in a.runs], 'rows': df.to_dict('records'),
                                                 'mean_auroc': {s: float(r[('auroc', 'mean')]) for s, r in mean.iterrows()},
                                                 'per_class': pc.reset_index().to_dict('records')}, indent=1))
    print(f"wrote {a.out}.md and .json")

if __name__ == '__main__': main()
