"""The adaptation loop's study on the embedded miniature: which of its settings let ground truth teach, and which keep
pseudo-label learning from decaying. Method-agnostic rows only (the loop oracle, the ground-truth-filtered control,
plain self-training, mt_all, AdaBN); no STvM part takes part.

    OMP_NUM_THREADS=1 python benchmarks/loop_study.py run NAME [NAME ...] [--jobs 2] [--setting gta5]
    python benchmarks/loop_study.py table [--setting gta5] [--out results/calibration]

Every row is a `TrainConfig` (a method and overrides of the loop's settings) named in ROWS; a name ending in `_3x`
runs three times the iterations of its 1x row. Every row evaluates teacher and student at every tenth of its run (the
trajectory). Runs live under $SFDA_RUNS/loop_study/<setting>/<name>; a finished run is not rerun. The table
(`loop_study_<setting>.md` and `.csv`) is read from their metrics.json files.
"""
import argparse, csv, json, os, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate import SETTINGS

BASE = dict(optimizer='sgd', lr=1e-3, head_lr_mult=1.0, weight_decay=5e-4, iters=200, crop=[128, 128], target_scale=[0.5, 1.5],
            jitter=0.2, blur=0.5, ema_alpha=0.99, ema_ramp=True, teacher_update='ema', teacher_bn='ema', bn_init=0, l2sp_weight=0.0, div_weight=0.0,
            loss_norm='mean')  # every row starts from the loop's settings before this study (SGD 1e-3, 128² rescaled crops, strong augmentation)
GT = {'optimizer': 'adamw', 'lr': 2e-3, 'weight_decay': 1e-4, 'crop': [128, 256], 'target_scale': [1.0, 1.0], 'jitter': 0.0}  # the source recipe's
G3 = {**GT, 'iters': 300}
S3 = {**G3, 'optimizer': 'sgd', 'lr': 1e-2, 'weight_decay': 5e-4}
H3 = {**S3, 'head_lr_mult': 10.0}
DEF = {**H3, 'iters': 400, 'ema_alpha': 0.98, 'bn_init': 20, 'eval_every': 40}  # the TrainConfig defaults chosen here
FIX = {**DEF, 'ema_alpha': 0.99999, 'ema_ramp': False, 'report': 'student'}  # the teacher all but never moves; the student is reported
ROWS = {  # name -> TrainConfig overrides (method included)
    # 1. the loop fed ground truth: the source recipe's settings one at a time, then together
    'lo_old': {'method': 'loop_oracle'},
    'lo_adamw': {'method': 'loop_oracle', 'optimizer': 'adamw', 'lr': 2e-3, 'weight_decay': 1e-4},
    'lo_whole': {'method': 'loop_oracle', 'crop': [128, 256], 'target_scale': [1.0, 1.0]},
    'lo_noaug': {'method': 'loop_oracle', 'jitter': 0.0, 'blur': 0.0},
    'lo_gt': {'method': 'loop_oracle', **GT},
    'lo_gt_aug': {'method': 'loop_oracle', **GT, 'jitter': 1.0},
    'lo_gt_300': {'method': 'loop_oracle', **GT, 'iters': 300},
    'lo_gt_lr4': {'method': 'loop_oracle', **GT, 'lr': 4e-3},
    'lo_gt_aug_tbn': {'method': 'loop_oracle', **GT, 'jitter': 1.0, 'teacher_bn': 'batch'},
    # 2. plain self-training (mt_threshold without mixing) in the loop that ground truth teaches (300 iterations), then each stabiliser
    'adabn_gt': {'method': 'adabn', **G3},
    'gtf_gt': {'method': 'gt_filtered', **G3},
    'gtf_gt_bn': {'method': 'gt_filtered', **G3, 'bn_init': 20},
    'st_gt': {'method': 'mt_threshold', 'mix': 'none', **G3},
    'st_gt_bn': {'method': 'mt_threshold', 'mix': 'none', **G3, 'bn_init': 20},
    'st_gt_tbn': {'method': 'mt_threshold', 'mix': 'none', **G3, 'teacher_bn': 'batch'},
    'st_gt_bn_slow': {'method': 'mt_threshold', 'mix': 'none', **G3, 'bn_init': 20, 'ema_alpha': 0.999, 'ema_ramp': False},
    'st_gt_bn_l2sp': {'method': 'mt_threshold', 'mix': 'none', **G3, 'bn_init': 20, 'l2sp_weight': 1e-2},
    'st_gt_bn_div': {'method': 'mt_threshold', 'mix': 'none', **G3, 'bn_init': 20, 'div_weight': 0.1},
    'st_gt_bn_cb': {'method': 'mt_threshold', 'mix': 'none', 'reliability': 'class_balanced', **G3, 'bn_init': 20},
    # 3. SGD: a step proportional to the gradient (AdamW's normalised steps turn the near-zero losses of confident pseudo-labels into full-size moves)
    'lo_sgd1e-2': {'method': 'loop_oracle', **G3, 'optimizer': 'sgd', 'lr': 1e-2, 'weight_decay': 5e-4},
    'lo_sgd2e-2': {'method': 'loop_oracle', **G3, 'optimizer': 'sgd', 'lr': 2e-2, 'weight_decay': 5e-4},
    'st_sgd1e-2_bn': {'method': 'mt_threshold', 'mix': 'none', **G3, 'optimizer': 'sgd', 'lr': 1e-2, 'weight_decay': 5e-4, 'bn_init': 20},
    'st_sgd2e-2_bn': {'method': 'mt_threshold', 'mix': 'none', **G3, 'optimizer': 'sgd', 'lr': 2e-2, 'weight_decay': 5e-4, 'bn_init': 20},
    'lo_sgd1e-2_h10': {'method': 'loop_oracle', **G3, 'optimizer': 'sgd', 'lr': 1e-2, 'weight_decay': 5e-4, 'head_lr_mult': 10.0},
    'lo_sgd5e-3_h10': {'method': 'loop_oracle', **G3, 'optimizer': 'sgd', 'lr': 5e-3, 'weight_decay': 5e-4, 'head_lr_mult': 10.0},
    'lo_sgd2e-2_h10': {'method': 'loop_oracle', **G3, 'optimizer': 'sgd', 'lr': 2e-2, 'weight_decay': 5e-4, 'head_lr_mult': 10.0},
    'lo_sgd1e-2_h10_ema98': {'method': 'loop_oracle', **G3, 'optimizer': 'sgd', 'lr': 1e-2, 'weight_decay': 5e-4, 'head_lr_mult': 10.0, 'ema_alpha': 0.98},
    # 4. the stabilisers, one at a time, in the SGD loop (lr 1e-2) with the AdaBN start
    'st_sgd_bn_slow': {'method': 'mt_threshold', 'mix': 'none', **S3, 'bn_init': 20, 'ema_alpha': 0.999, 'ema_ramp': False},
    'st_sgd_bn_cbl': {'method': 'mt_threshold', 'mix': 'none', **S3, 'bn_init': 20, 'loss_norm': 'class'},
    'st_sgd_bn_cb': {'method': 'mt_threshold', 'mix': 'none', 'reliability': 'class_balanced', **S3, 'bn_init': 20},
    'st_sgd_bn_l2sp': {'method': 'mt_threshold', 'mix': 'none', **S3, 'bn_init': 20, 'l2sp_weight': 1e-2},
    'st_sgd_bn_div': {'method': 'mt_threshold', 'mix': 'none', **S3, 'bn_init': 20, 'div_weight': 0.1},
    'st_sgd_bn_tbn': {'method': 'mt_threshold', 'mix': 'none', **S3, 'bn_init': 20, 'teacher_bn': 'batch'},
    'gtf_sgd_bn': {'method': 'gt_filtered', **S3, 'bn_init': 20},
    # 5. a student view that differs from the teacher's (DACS's strong augmentation), with the teacher's BN on clean batches
    'st_sgd_bn_aug_tbn': {'method': 'mt_threshold', 'mix': 'none', **S3, 'bn_init': 20, 'jitter': 1.0, 'teacher_bn': 'batch'},
    'lo_sgd_h10_aug_tbn': {'method': 'loop_oracle', **S3, 'head_lr_mult': 10.0, 'jitter': 1.0, 'teacher_bn': 'batch'},
    'st_sgd_bn_l2sp1': {'method': 'mt_threshold', 'mix': 'none', **S3, 'bn_init': 20, 'l2sp_weight': 1.0},
    # 6. the candidate loop (SGD 1e-2, head x10) with the AdaBN start
    'gtf_h10_bn': {'method': 'gt_filtered', **H3, 'bn_init': 20},
    'st_h10_bn': {'method': 'mt_threshold', 'mix': 'none', **H3, 'bn_init': 20},
    'lo_h10_400': {'method': 'loop_oracle', **H3, 'iters': 400},
    'lo_h10_400_ema98': {'method': 'loop_oracle', **H3, 'iters': 400, 'ema_alpha': 0.98},
    # 7. L2-SP (a pull toward the starting weights) in the candidate loop: does it also hold ground truth back?
    'lo_h10_l2sp1': {'method': 'loop_oracle', **H3, 'l2sp_weight': 1.0},
    'st_h10_bn_l2sp1': {'method': 'mt_threshold', 'mix': 'none', **H3, 'bn_init': 20, 'l2sp_weight': 1.0},
    'gtf_h10_bn_l2sp1': {'method': 'gt_filtered', **H3, 'bn_init': 20, 'l2sp_weight': 1.0},
    'lo_h10_l2sp01': {'method': 'loop_oracle', **H3, 'l2sp_weight': 0.1},
    'st_h10_bn_l2sp01': {'method': 'mt_threshold', 'mix': 'none', **H3, 'bn_init': 20, 'l2sp_weight': 0.1},
    # 8. the chosen defaults (`DEF`): a pull toward the starting weights that may let ground truth teach and stop the collapse
    'lo_def_l2sp03': {'method': 'loop_oracle', **DEF, 'l2sp_weight': 0.3},
    'st_def_l2sp03': {'method': 'mt_threshold', 'mix': 'none', **DEF, 'l2sp_weight': 0.3},
    # 9. after the fix: DACS's own colour jitter (0.2) in the chosen loop
    'lo_def_j02': {'method': 'loop_oracle', **DEF, 'jitter': 0.2},
    'st_def_j02': {'method': 'mt_threshold', 'mix': 'none', **DEF, 'jitter': 0.2},
    'lo_def_b0': {'method': 'loop_oracle', **DEF, 'blur': 0.0},
    'st_def_b0': {'method': 'mt_threshold', 'mix': 'none', **DEF, 'blur': 0.0},
    # 5. a first phase on pseudo-labels fixed from the starting model: the teacher all but never moves (EMA 0.99999, no ramp: 0.4 % of the student in 400 steps)
    'st_def_fixed': {'method': 'mt_threshold', 'mix': 'none', **DEF, 'ema_alpha': 0.99999, 'ema_ramp': False, 'report': 'student'},
    'gf_def_fixed': {'method': 'gt_filtered', **DEF, 'ema_alpha': 0.99999, 'ema_ramp': False, 'report': 'student'},
    # 10. a teacher that does not move (FIX), and what pseudo-label selection and weighting do in it (plain self-training)
    'st_fix_cb': {'method': 'mt_threshold', 'mix': 'none', 'reliability': 'class_balanced', **FIX},
    'st_fix_cls': {'method': 'mt_threshold', 'mix': 'none', **FIX, 'loss_norm': 'class'},
    'all_fix_nomix': {'method': 'mt_all', 'mix': 'none', **FIX},
    'st_fix_t09': {'method': 'mt_threshold', 'mix': 'none', **FIX, 'threshold': 0.9},
    'st_fix_lr25': {'method': 'mt_threshold', 'mix': 'none', **FIX, 'lr': 2.5e-3},  # a smaller step: no early shock to the rare classes?
    'all_fix_lr25': {'method': 'mt_all', 'mix': 'none', **FIX, 'lr': 2.5e-3},
    'st_fix_uniform': {'method': 'mt_threshold', 'mix': 'none', 'reliability': 'threshold_uniform', **FIX},  # DACS's code: one weight per batch
    'st_def_lr1e-3': {'method': 'mt_threshold', 'mix': 'none', **DEF, 'lr': 1e-3},  # the chosen loop at the old learning rate
}

def work_dir(setting): return Path(os.environ.get('SFDA_RUNS', 'runs'))/'loop_study'/setting

def config(name, setting):
    from sfda_nb import train
    base, x3 = (name[:-3], True) if name.endswith('_3x') else (name, False)
    kw = {**BASE, **ROWS[base]}
    iters = kw['iters'] * (3 if x3 else 1)
    src, tgt = SETTINGS[setting]
    return train.TrainConfig(**{'source': src, 'target': tgt, 'threads': 1, 'resume': True, 'eval_every': max(iters // 10, 1),
                                'out_dir': str(work_dir(setting)/name), **kw, 'iters': iters})

def run_one(name, setting):
    from sfda_nb import train
    m = train.run(config(name, setting))
    t = [(e['iter'], round(e['teacher']['miou'], 1)) for e in m['history']]
    print('ROW', name, round(m['miou'], 2), t, f"{m['seconds']:.0f}s", flush=True)

def table(setting, out:Path):
    rows = []
    for d in sorted(work_dir(setting).iterdir()):
        if not (d/'metrics.json').exists(): continue
        m = json.loads((d/'metrics.json').read_text())
        h = m['history']; so = m['source_only']['miou']
        rows.append({'row': d.name, 'method': m['method'], 'iters': m['config']['iters'], 'teacher': round(h[-1]['teacher']['miou'], 1),
                     'student': round(h[-1]['student']['miou'], 1), 'best_teacher': round(max(e['teacher']['miou'] for e in h), 1),
                     'source_only': round(so, 1), 'seconds': round(m['seconds']),
                     'reported': m['report'], 'trajectory': ' '.join(f"{e[m['report']]['miou']:.1f}" for e in h if m['report'] in e),
                     'overrides': json.dumps({k: v for k, v in ROWS[d.name.removesuffix('_3x')].items()})})
    out.mkdir(parents=True, exist_ok=True)
    with open(out/f'loop_study_{setting}.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, list(rows[0])); w.writeheader(); w.writerows(rows)
    md = [f"## The loop study, {SETTINGS[setting][0]} → {SETTINGS[setting][1]} (seed 0 unless the row says)", '',
          'Teacher and student mIoU at the end, the teacher\'s best, and the reported model\'s mIoU at every tenth of the run (the '
          'trajectory; the student where the teacher does not move).', '',
          '| row | method | iters | teacher | best | student | reported | trajectory (reported) | overrides |',
          '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    md += [f"| {r['row']} | {r['method']} | {r['iters']} | {r['teacher']} | {r['best_teacher']} | {r['student']} | {r['reported']} | {r['trajectory']} | `{r['overrides']}` |" for r in rows]
    (out/f'loop_study_{setting}.md').write_text('\n'.join(md) + '\n')
    print('\n'.join(md))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('cmd', choices=('run', 'one', 'table')); p.add_argument('names', nargs='*')
    p.add_argument('--setting', default='gta5', choices=sorted(SETTINGS)); p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--out', default='results/calibration')
    a = p.parse_args()
    if a.cmd == 'table': table(a.setting, Path(a.out)); return
    if a.cmd == 'one': run_one(a.names[0], a.setting); return
    todo, procs, t0 = list(a.names), [], time.time()
    logs = work_dir(a.setting)/'logs'; logs.mkdir(parents=True, exist_ok=True)
    while todo or procs:
        procs = [q for q in procs if q.poll() is None]
        while todo and len(procs) < a.jobs:
            n = todo.pop(0)
            procs.append(subprocess.Popen([sys.executable, __file__, 'one', n, '--setting', a.setting],
                                          stdout=open(logs/f'{n}.log', 'w'), stderr=subprocess.STDOUT, env={**os.environ, 'OMP_NUM_THREADS': '1'}))
        time.sleep(3)
    print(f"finished in {time.time() - t0:.0f}s")

if __name__ == '__main__': main()
