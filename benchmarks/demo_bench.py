"""The README's demo figures, measured: `./run.sh demo` cold (empty data and runs folders: render, pretraining-world
backbone as committed, source model, AdaBN and STvM) in a clean clone of this repository, with its wall time per stage.

    .venv/bin/python benchmarks/demo_bench.py [--out results/demo.json] [-- demo options]

The clone uses this checkout's `.venv` (installing it is `./run.sh setup`'s job, timed apart). Conditions recorded:
CPU count, threads, load average before and after, and whether anything else was running is up to whoever runs it.
"""
import argparse, json, os, platform, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def derive(res:dict) -> dict:
    "Add the calibration's stored oracle for the demo's setting and the share of the gap each run closes."
    summary = json.loads((ROOT/'results'/'calibration'/'gta5_summary.json').read_text())
    s, o = res['miou']['source_only'], summary['oracle']
    res['miou']['oracle_stored'] = o
    res['gap_closed_pct'] = {m: round(100 * (v - s) / (o - s), 1) for m, v in res['miou'].items() if m not in ('source_only', 'oracle_stored')}
    return res

def main():
    if sys.argv[1:] == ['--derive']:  # recompute the derived fields of an existing results/demo.json (no demo run)
        f = ROOT/'results'/'demo.json'; f.write_text(json.dumps(derive(json.loads(f.read_text())), indent=1) + '\n'); return
    ap = argparse.ArgumentParser(); ap.add_argument('--out', default=str(ROOT/'results'/'demo.json'))
    ap.add_argument('demo_args', nargs='*')
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='sfda_demo_bench_'))
    subprocess.run(['git', 'clone', '-q', str(ROOT), str(tmp/'clone')], check=True)
    env = {**os.environ, 'SFDA_DATA': str(tmp/'data'), 'SFDA_RUNS': str(tmp/'runs'), 'PYTHONPATH': str(tmp/'clone')}
    env.pop('OMP_NUM_THREADS', None)
    load0, t0 = os.getloadavg(), time.time()
    p = subprocess.run([sys.executable, '-m', 'sfda_nb.cli', 'demo', *a.demo_args], cwd=tmp/'clone', env=env, capture_output=True, text=True)
    total, load1 = time.time() - t0, os.getloadavg()
    if p.returncode: sys.exit(f"the demo failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    runs = {json.loads(f.read_text())['method']: json.loads(f.read_text()) for f in (tmp/'runs').rglob('metrics.json')}
    src_meta = next(iter(runs.values()))['source_ckpt']
    manifest = json.loads(next((tmp/'data').rglob('manifest.json')).read_text()) if list((tmp/'data').rglob('manifest.json')) else {}
    table = p.stdout[p.stdout.rfind('\nsynth_gta5 -> '):] if '\nsynth_gta5 -> ' in p.stdout else p.stdout[-2000:]
    res = {'command': './run.sh demo ' + ' '.join(a.demo_args), 'date': time.strftime('%Y-%m-%d %H:%M'),
           'conditions': {'machine': f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs", 'python': platform.python_version(),
                          'threads': 'the default (all CPUs of the process)', 'cache': 'cold: empty data and runs folders',
                          'load_before': round(load0[0], 2), 'load_after': round(load1[0], 2)},
           'seconds': {'total': round(total, 1), 'source_training': round(src_meta.get('train_seconds') or 0, 1),
                       **{m: round(r['seconds'], 1) for m, r in runs.items()}},
           'miou': {'source_only': runs[next(iter(runs))]['source_only']['miou'], **{m: r['miou'] for m, r in runs.items()}},
           'render_seconds': manifest.get('seconds'), 'stdout_table': table.strip().replace(str(tmp) + '/', '')}  # no machine path in a committed file
    Path(a.out).write_text(json.dumps(derive(res), indent=1) + '\n'); print(json.dumps(res, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': main()
