"""The calibration of the embedded miniature: method-agnostic runs only, one table.

    OMP_NUM_THREADS=1 python benchmarks/calibrate.py all [--setting gta5] [--jobs 2] [--loop JSON] [--out DIR]
    OMP_NUM_THREADS=1 python benchmarks/calibrate.py run ROW [--setting gta5] [--loop JSON]   # one row
    python benchmarks/calibrate.py table [--setting gta5] [--out DIR]                        # the table from finished rows

Rows: source_only, oracle (the same net trained on the target's labelled train split with the
source recipe), adabn (only BatchNorm statistics follow the target), loop_oracle (the adaptation
loop fed the target's ground truth), and plain pseudo-label self-training (`mt_threshold`, no
mixing) over seeds 0, 1, 2, the generic ordering check against AdaBN. No STvM part (metric
reliability, MOCM) takes part. Every number is read from the runs' metrics.json files, which live
under $SFDA_RUNS/calibration/<setting>/<row>; a finished row is not run again (`resume`).

`--loop` holds TrainConfig overrides shared by every adaptation row (the loop's defaults under
calibration, e.g. '{"lr": 1e-3, "iters": 300}'); the README of the output folder records them.
"""
import argparse, csv, json, os, subprocess, sys, time
from pathlib import Path

SETTINGS = {'gta5': ('synth_gta5', 'synth_cityscapes'), 'synthia': ('synth_synthia', 'synth_cityscapes'),
            'nthu': ('synth_cityscapes', 'synth_nthu_rome')}
ROWS = {  # row -> (TrainConfig overrides, where the row's numbers live in metrics.json)
    'source_only': ({'method': 'source_only'}, 'source_only'),
    'oracle': ({'method': 'oracle'}, 'oracle'),
    'adabn': ({'method': 'adabn'}, 'headline'),
    'loop_oracle': ({'method': 'loop_oracle'}, 'headline'),
    **{f'mt_threshold_nomix_s{s}': ({'method': 'mt_threshold', 'mix': 'none', 'seed': s}, 'headline') for s in (0, 1, 2)},
    'gt_filtered': ({'method': 'gt_filtered'}, 'headline'),  # self-training with a perfect reliability: the bound of any
    'mt_threshold_nomix_s0_3x': ({'method': 'mt_threshold', 'mix': 'none', 'seed': 0}, 'headline'),  # _3x: three times the iterations
    'gt_filtered_3x': ({'method': 'gt_filtered'}, 'headline'),
}

# The field's numbers this miniature is calibrated against (DeepLabV2-R101, GTA5 -> Cityscapes, mIoU19): the source-only
# model of AdaptSegNet's ResNet baseline and the oracle trained on Cityscapes (Tsai et al., CVPR 2018, Table 1).
FIELD = {'gta5': {'source_only': 36.6, 'oracle': 65.1}}

def work_dir(setting): return Path(os.environ.get('SFDA_RUNS', 'runs'))/'calibration'/setting

def run_row(row, setting, loop, tag=''):
    "Run one row (or find it finished) and return its metrics; `tag` names a probe's folder (row + tag), kept out of the table."
    from sfda_nb import train
    src, tgt = SETTINGS[setting]
    iters = loop.get('iters', train.TrainConfig.iters) * (3 if row.endswith('_3x') else 1)
    kw = {'source': src, 'target': tgt, 'threads': 1, 'resume': True, 'out_dir': str(work_dir(setting)/(row + tag)), **loop,
          **ROWS[row][0], 'iters': iters, 'eval_every': max(iters // 10, 1)}  # the trajectory: an evaluation every tenth of the run
    return train.run(train.TrainConfig(**kw))

def numbers(m, where):
    "(mIoU, per-class IoU dict, best mIoU) of a row's metrics."
    if where in ('source_only', 'oracle'): e = m[where]; return e['miou'], e['iou'], e['miou']
    r = m[m['report']] if m['report'] in ('teacher', 'student') else m['source_only']
    return r['last'], r['last_per_class'], r['best']

def table(setting, out:Path):
    "Write <setting>.csv and <setting>.md from the finished rows; return the Markdown."
    ms = {r: json.loads((work_dir(setting)/r/'metrics.json').read_text()) for r in ROWS if (work_dir(setting)/r/'metrics.json').exists()}
    from sfda_nb import train
    src, tgt = SETTINGS[setting]
    undefined = [r for r in ROWS if not train.defined_on(ROWS[r][0]['method'], tgt)]  # no oracle without target train labels
    if 'source_only' not in ms or not ({'oracle'} <= set(ms) | set(undefined)):
        sys.exit(f"source_only and oracle must be finished first ({sorted(ms)})")
    names = ms['source_only']['class_names']
    so = numbers(ms['source_only'], 'source_only')[0]
    orc = numbers(ms['oracle'], 'oracle')[0] if 'oracle' in ms else None
    gap = lambda v: None if orc is None else 100*(v - so)/(orc - so)
    rows = []
    for r, m in ms.items():
        miou, iou, best = numbers(m, ROWS[r][1])
        g = gap(miou)
        traj = ' '.join(f"{e[m['report']]['miou']:.1f}" for e in m['history']) if ROWS[r][1] == 'headline' else ''
        rows.append({'row': r, 'seed': m['seed'], 'miou': round(miou, 2), 'best': round(best, 2), 'gap_closed_pct': None if g is None else round(g, 1),
                     'trajectory': traj,
                     'report': m['report'], 'seconds': round(m['seconds']),   # the loop's settings only where a loop ran
                     'iters': m['config']['iters'] if ROWS[r][1] == 'headline' else None, 'lr': m['config']['lr'] if ROWS[r][1] == 'headline' else None,
                     **{n: (None if iou[n] is None else round(iou[n], 1)) for n in names}})
    mt = [x['miou'] for x in rows if x['row'].startswith('mt_threshold') and not x['row'].endswith('_3x')]
    get = lambda name: next((x['miou'] for x in rows if x['row'] == name), None)
    from sfda_nb import synth
    cfg = next((m for r, m in ms.items() if ROWS[r][1] == 'headline'), ms['source_only'])['config']   # a loop row's settings
    summary = dict(source=SETTINGS[setting][0], target=SETTINGS[setting][1], protocol=ms['source_only']['protocol'],
                   render_version=synth.RENDER_VERSION, source_sha256=ms['source_only']['source_ckpt']['sha256'],
                   oracle_sha256=ms['oracle']['source_ckpt']['sha256'] if orc is not None else None, source_iters=cfg['source_iters'],
                   source_only=so, oracle=orc, ratio=None if orc is None else so/orc, undefined_rows=undefined, adabn=get('adabn'),
                   loop_oracle=get('loop_oracle'), gt_filtered=get('gt_filtered'), gt_filtered_3x=get('gt_filtered_3x'),
                   mt_threshold_s0=get('mt_threshold_nomix_s0'), mt_threshold_s0_3x=get('mt_threshold_nomix_s0_3x'),
                   mt_threshold_mean=sum(mt)/len(mt) if mt else None, n_mt=len(mt),
                   gap_closed_pct={x['row']: x['gap_closed_pct'] for x in rows if x['gap_closed_pct'] is not None},
                   loop={k: cfg.get(k) for k in ('iters', 'lr', 'optimizer', 'head_lr_mult', 'weight_decay', 'teacher_update', 'ema_alpha', 'ema_ramp', 'batch_size', 'crop',
                                                 'target_scale', 'jitter', 'blur', 'student_bn', 'teacher_bn', 'bn_init', 'l2sp_weight', 'div_weight', 'loss_norm')},
                   source_train_seconds=ms['source_only']['source_ckpt'].get('train_seconds'),
                   oracle_train_seconds=ms['oracle']['source_ckpt'].get('train_seconds') if orc is not None else None,
                   pretrained={k: v for k, v in (ms['source_only']['source_ckpt'].get('pretrained') or {}).items() if k != 'path'},
                   field={**FIELD[setting], 'ratio': FIELD[setting]['source_only']/FIELD[setting]['oracle']} if setting in FIELD else None)
    out.mkdir(parents=True, exist_ok=True)
    with open(out/f'{setting}.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, list(rows[0])); w.writeheader(); w.writerows(rows)
    md = [f"## {SETTINGS[setting][0]} → {SETTINGS[setting][1]} ({ms['source_only']['protocol']})", '',
          '| row | seed | mIoU | best | % of gap closed | iters | lr | trajectory (every tenth of the run) |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    na = lambda v, f: '-' if v is None else format(v, f)
    md += [f"| {x['row']} | {x['seed']} | {x['miou']:.1f} | {x['best']:.1f} | {na(x['gap_closed_pct'], '.0f')} | {na(x['iters'], 'd')} | {na(x['lr'], 'g')} | {x['trajectory']} |" for x in rows]
    md += [f"| {r} | - | not defined | | | | | |" for r in undefined]
    md += ['', '| class | ' + ' | '.join(x['row'] for x in rows) + ' |', '| --- |' + ' --- |'*len(rows)]
    md += [f"| {n} | " + ' | '.join('n/a' if x[n] is None else f"{x[n]:.1f}" for x in rows) + ' |' for n in names]
    md += ['', _checks(summary, rows, names, gap)]
    (out/f'{setting}.md').write_text('\n'.join(md) + '\n')
    (out/f'{setting}_summary.json').write_text(json.dumps(summary, indent=1))
    return '\n'.join(md)

def _checks(s, rows, names, gap) -> str:
    "The §2 targets, each with its measured value."
    by = {x['row']: x for x in rows}
    so = by['source_only']
    low_so = sum(1 for n in names if so[n] is not None and so[n] < 5)
    out = ['| target | measured | met |', '| --- | --- | --- |']
    if s['oracle'] is None:
        out.append(f"| oracle-based targets | not defined: {s['target']} has no labelled train split (neither has the real dataset) | - |")
    else:
        orc = by['oracle']
        low_orc = min((orc[n] for n in names if orc[n] is not None), default=None)
        out += [f"| oracle ≥ 60 | {s['oracle']:.1f} | {'yes' if s['oracle'] >= 60 else 'no'} |",
                f"| every class of the oracle ≥ 15 IoU | lowest {low_orc:.1f} | {'yes' if low_orc >= 15 else 'no'} |",
                f"| source-only between 0.50 and 0.65 of the oracle | {s['ratio']:.2f} | {'yes' if 0.5 <= s['ratio'] <= 0.65 else 'no'} |"]
    out.append(f"| ≤ 2 classes below 5 IoU for source-only | {low_so} | {'yes' if low_so <= 2 else 'no'} |")
    if s['adabn'] is not None and s['oracle'] is None:
        out.append(f"| AdaBN against source-only (no oracle: the gap is undefined) | {s['adabn'] - s['source_only']:+.1f} points | - |")
    if s['adabn'] is not None and s['oracle'] is not None: out.append(f"| AdaBN closes ≤ 35 % of the gap | {gap(s['adabn']):.0f} % | {'yes' if gap(s['adabn']) <= 35 else 'no'} |")
    if s['loop_oracle'] is not None:
        out.append(f"| loop oracle closes ≥ 85 % of the gap | {gap(s['loop_oracle']):.0f} % | {'yes' if gap(s['loop_oracle']) >= 85 else 'no'} |")
    if s['gt_filtered'] is not None and s['adabn'] is not None:
        d = s['gt_filtered'] - s['adabn']
        out.append(f"| ground-truth-filtered control ≥ AdaBN + 8 | {d:+.1f} points | {'yes' if d >= 8 else 'no'} |")
    for name, one, three in (('ground-truth-filtered control', 'gt_filtered', 'gt_filtered_3x'), ('plain self-training (seed 0)', 'mt_threshold_s0', 'mt_threshold_s0_3x')):
        if s[one] is not None and s[three] is not None:
            d = s[three] - s[one]
            out.append(f"| {name} at 3× the iterations ≥ its 1× − 1 | {d:+.1f} points | {'yes' if d >= -1 else 'no'} |")
    if s['mt_threshold_mean'] is not None and s['adabn'] is not None:
        d = s['mt_threshold_mean'] - s['adabn']
        out.append(f"| mt_threshold (no mix, mean of {s['n_mt']} seeds) ≥ AdaBN + 3 | {d:+.1f} points | {'yes' if d >= 3 else 'no'} |")
    return '\n'.join(out)

def probes(setting, out:Path):
    "Write <setting>_probes.md: every tagged run (row + tag: the loop settings tried before choosing), measured, with its overrides."
    from sfda_nb import train
    base = train.TrainConfig()
    keys = ('lr', 'iters', 'optimizer', 'weight_decay', 'head_lr_mult', 'crop', 'student_bn')
    md = [f"## Loop settings tried on {SETTINGS[setting][0]} → {SETTINGS[setting][1]} (same data and source model)", '',
          'Folders named row + tag; `_noscale` (target stream not rescaled) and `_noaug` (no strong augmentation) are the',
          'runs made before those two were config fields (now `target_scale=[1.0, 1.0]` and `jitter=0, blur=0`). Teacher and student: last evaluation.', '',
          '| run | overrides | teacher | student |', '| --- | --- | --- | --- |']
    for d in sorted(work_dir(setting).iterdir()):
        row = next((r for r in ROWS if d.name.startswith(r) and d.name != r), None)
        if row is None or not (d/'metrics.json').exists(): continue
        m = json.loads((d/'metrics.json').read_text())
        over = {k: m['config'][k] for k in keys if m['config'][k] != json.loads(json.dumps(getattr(base, k)))}
        f = lambda k: '-' if not m.get(k) else f"{m[k]['last']:.1f}"
        md.append(f"| {d.name} | `{json.dumps(over)}` | {f('teacher')} | {f('student')} |")
    (out/f'{setting}_probes.md').write_text('\n'.join(md) + '\n')

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('cmd', choices=('all', 'run', 'table', 'probes')); p.add_argument('row', nargs='?')
    p.add_argument('--setting', default='gta5', choices=sorted(SETTINGS)); p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--loop', default='{}'); p.add_argument('--out', default='results/calibration')
    p.add_argument('--rows', default=','.join(ROWS)); p.add_argument('--tag', default='')
    a = p.parse_args(); loop = json.loads(a.loop)
    if a.cmd == 'probes': probes(a.setting, Path(a.out)); return
    if a.cmd == 'run':
        m = run_row(a.row, a.setting, loop, a.tag)
        print('ROW', a.row + a.tag, loop, round(numbers(m, ROWS[a.row][1])[0], 2), flush=True); return
    if a.cmd == 'all':
        from sfda_nb import train
        todo, procs, t0 = [r for r in a.rows.split(',') if train.defined_on(ROWS[r][0]['method'], SETTINGS[a.setting][1])], [], time.time()
        logs = work_dir(a.setting)/'logs'; logs.mkdir(parents=True, exist_ok=True)
        while todo or procs:
            procs = [q for q in procs if q.poll() is None]
            while todo and len(procs) < a.jobs:
                r = todo.pop(0)
                cmd = [sys.executable, __file__, 'run', r, '--setting', a.setting, '--loop', a.loop]
                procs.append(subprocess.Popen(cmd, stdout=open(logs/f'{r}.log', 'w'), stderr=subprocess.STDOUT,
                                              env={**os.environ, 'OMP_NUM_THREADS': '1'}))
            time.sleep(5)
        print(f"all rows finished in {time.time() - t0:.0f}s")
    print(table(a.setting, Path(a.out)))

if __name__ == '__main__': main()
