"""One STvM iteration vs one plain mean-teacher iteration: wall time, images/s, peak memory (and MFU on a GPU).

    python benchmarks/step_bench.py --config cpu --quick --out results/bench_cpu.md   # CI-sized, < 60 s
    python benchmarks/step_bench.py --config gpu --out results/bench_gpu.md           # DeepLabV2-R101, 2 x 512x512

Every (method, precision) runs in a fresh process, so that peak memory belongs to that run alone;
the figures come from `sfda_nb.scale.bench_step` and the table from `scale.bench_table`.
"""
import argparse, json, os, platform, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = 'mt_threshold'  # the plain mean teacher: DACS's confidence threshold with ClassMix

def configs(name:str, quick:bool) -> list:
    "The (method, settings) runs of a configuration."
    if name == 'cpu':
        base = dict(arch='small', batch_size=4, crop=[128, 128], device='cpu', amp='none', channels_last=False,
                    steps=8 if quick else 30, warmup=2 if quick else 5, threads=1 if quick else 2)
        return [dict(base, method=m) for m in (BASELINE, 'stvm')]
    if name == 'gpu':
        base = dict(arch='deeplabv2_r101', batch_size=2, crop=[512, 512], device='cuda', steps=10 if quick else 30,
                    warmup=3 if quick else 5, threads=0)
        precisions = [dict(amp='none', channels_last=False), dict(amp='bf16', channels_last=False), dict(amp='bf16', channels_last=True)]
        return [dict(base, method=m, **p) for p in precisions for m in (BASELINE, 'stvm')]
    raise SystemExit(f"--config {name!r}: use 'cpu' or 'gpu'")

def one(spec:dict) -> dict:
    "Run one benchmark in this process and return its figures."
    import torch
    if spec['threads']: torch.set_num_threads(spec['threads'])
    from sfda_nb import scale
    a, x = scale.bench_adaptation(spec['method'], spec['arch'], spec['batch_size'], spec['crop'], spec['device'],
                                  spec['amp'], spec['channels_last'])
    r = scale.bench_step(a, x, steps=spec['steps'], warmup=spec['warmup'])
    if x.device.type == 'cuda':
        r['gpu'] = torch.cuda.get_device_name(x.device)
        peak = scale.peak_tflops(r['gpu'], spec['amp'])
        r['mfu'] = None if peak is None else r['gflops_per_iter'] * 1e9 / r['sec_per_iter'] / (peak * 1e12)
        r['peak_tflops'] = peak
    with torch.no_grad():  # how many classes the teacher's pseudo-labels hold: the metric sampler's load
        r['pseudo_classes'] = int(a.teacher(x).logits.argmax(1).unique().numel())
    return r

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='cpu', help="'cpu' (small model) or 'gpu' (DeepLabV2-R101, 2 x 512x512)")
    p.add_argument('--quick', action='store_true', help='fewer iterations (CI-sized)')
    p.add_argument('--out', default='', help='write the Markdown table (and a .json of the raw figures) here')
    p.add_argument('--one', default='', help=argparse.SUPPRESS)  # internal: run one spec (JSON) and print its result
    a = p.parse_args(argv)
    if a.one:
        print('RESULT ' + json.dumps(one(json.loads(a.one)))); return
    t0, rows = time.time(), []
    for spec in configs(a.config, a.quick):
        env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
        if spec['threads']: env.update(OMP_NUM_THREADS=str(spec['threads']), MKL_NUM_THREADS=str(spec['threads']))
        r = subprocess.run([sys.executable, __file__, '--one', json.dumps(spec)], capture_output=True, text=True, env=env, cwd=ROOT)
        line = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
        if r.returncode or not line: raise SystemExit(f"benchmark {spec} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        rows.append(json.loads(line[0][7:]))
        print(f"{spec['method']:>13} {spec['amp']:>5} cl={spec['channels_last']!s:5} {rows[-1]['sec_per_iter']:.4f} s/iter", flush=True)
    from sfda_nb.scale import bench_table
    import torch
    dev = rows[0].get('gpu') or f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    note = (f"\n\nMeasured {time.strftime('%Y-%m-%d')} on {dev} with torch {torch.__version__}: median of "
            f"{rows[0]['steps']} iterations after warm-up, synthetic batch, randomly initialised network "
            f"(pseudo-labels with {min(r['pseudo_classes'] for r in rows)}-{max(r['pseudo_classes'] for r in rows)} classes); "
            f"plain mean teacher = `{BASELINE}` (threshold + ClassMix). "
            f"Reproduce: `python benchmarks/step_bench.py --config {a.config}{' --quick' if a.quick else ''}`.")
    table = bench_table(rows) + note
    print('\n' + table + f"\n\n({time.time() - t0:.0f} s)")
    if a.out:
        out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + '\n'); out.with_suffix('.json').write_text(json.dumps(rows, indent=1) + '\n')

if __name__ == '__main__': main()
