"""One STvM iteration vs one plain mean-teacher iteration: wall time, images/s, peak memory (and MFU on a GPU).

    python benchmarks/step_bench.py --config cpu --quick --out results/bench_cpu.md   # CI-sized, < 60 s
    python benchmarks/step_bench.py --config gpu --out results/bench_gpu.md           # DeepLabV2-R101, 2 x 512x512

Per configuration, one process times both methods with their iterations interleaved (a shared
machine's load then hits both alike: `scale.time_interleaved`), and one fresh process per method
measures its peak memory and FLOPs (`scale.bench_step`); `scale.bench_table` writes the table.
"""
import argparse, json, os, platform, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = 'mt_threshold'  # the plain mean teacher: DACS's confidence threshold with ClassMix
METHODS = (BASELINE, 'stvm')

def configs(name:str, quick:bool) -> list:
    "The settings of each (precision) configuration; each runs STvM and the baseline."
    if name == 'cpu':
        return [dict(arch='small', batch_size=4, crop=[128, 128], device='cpu', amp='none', channels_last=False,
                     steps=10 if quick else 40, warmup=2 if quick else 5, threads=1 if quick else 2)]
    if name == 'gpu':
        base = dict(arch='deeplabv2_r101', batch_size=2, crop=[512, 512], device='cuda', steps=10 if quick else 30,
                    warmup=3 if quick else 5, threads=0)
        return [dict(base, amp='none', channels_last=False), dict(base, amp='bf16', channels_last=False),
                dict(base, amp='bf16', channels_last=True)]
    raise SystemExit(f"--config {name!r}: use 'cpu' or 'gpu'")

def _build(spec, method):
    from sfda_nb import scale
    return scale.bench_adaptation(method, spec['arch'], spec['batch_size'], spec['crop'], spec['device'],
                                  spec['amp'], spec['channels_last'])

def one(spec:dict) -> dict:
    "In a fresh process: spec['job'] = 'time' (both methods, iterations interleaved) or a method name (its memory, FLOPs)."
    import torch
    if spec['threads']: torch.set_num_threads(spec['threads'])
    from sfda_nb import scale
    if spec['job'] == 'time':
        secs = scale.time_interleaved([_build(spec, m) for m in METHODS], spec['steps'], spec['warmup'])
        return dict(zip(METHODS, secs))
    a, x = _build(spec, spec['job'])
    r = scale.bench_step(a, x, steps=2, warmup=1)  # memory and FLOPs; the time comes from the interleaved run
    if x.device.type == 'cuda': r['gpu'] = torch.cuda.get_device_name(x.device)
    with torch.no_grad():  # how many classes the teacher's pseudo-labels hold: the metric sampler's load
        r['pseudo_classes'] = int(a.teacher(x).logits.argmax(1).unique().numel())
    return r

def _child(spec:dict) -> dict:
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    if spec['threads']: env.update(OMP_NUM_THREADS=str(spec['threads']), MKL_NUM_THREADS=str(spec['threads']))
    r = subprocess.run([sys.executable, __file__, '--one', json.dumps(spec)], capture_output=True, text=True, env=env, cwd=ROOT)
    line = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    if r.returncode or not line: raise SystemExit(f"benchmark {spec} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return json.loads(line[0][7:])

def measure(spec:dict) -> list:
    "Rows of `scale.bench_table` for one configuration: interleaved times, then memory and FLOPs per method."
    secs = _child(dict(spec, job='time'))
    rows = []
    for m in METHODS:
        r = _child(dict(spec, job=m))
        wall, cpu = secs[m]
        r.update(sec_per_iter=wall, images_per_sec=spec['batch_size'] / wall, steps=spec['steps'])
        if spec['device'] == 'cpu': r['cpu_sec_per_iter'] = cpu
        if 'gpu' in r:
            from sfda_nb.scale import peak_tflops
            peak = peak_tflops(r['gpu'], spec['amp'])
            r['peak_tflops'], r['mfu'] = peak, None if peak is None else r['gflops_per_iter'] * 1e9 / r['sec_per_iter'] / (peak * 1e12)
        rows.append(r)
        print(f"{m:>13} {spec['amp']:>5} channels_last={spec['channels_last']!s:5} {r['sec_per_iter']:.4f} s/iter", flush=True)
    return rows

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='cpu', help="'cpu' (small model) or 'gpu' (DeepLabV2-R101, 2 x 512x512)")
    p.add_argument('--quick', action='store_true', help='fewer iterations (CI-sized)')
    p.add_argument('--out', default='', help='write the Markdown table here (and the raw figures to raw/<name>.json beside it)')
    p.add_argument('--one', default='', help=argparse.SUPPRESS)  # internal: run one spec (JSON) and print its result
    a = p.parse_args(argv)
    if a.one:
        print('RESULT ' + json.dumps(one(json.loads(a.one)))); return
    t0, rows = time.time(), []
    for spec in configs(a.config, a.quick): rows += measure(spec)
    from sfda_nb.scale import bench_table
    import torch
    dev = rows[0].get('gpu') or f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    note = (f"\n\nMeasured {time.strftime('%Y-%m-%d')} on {dev} with torch {torch.__version__}: median of "
            f"{rows[0]['steps']} iterations after warm-up, the two methods' iterations interleaved"
            f"{' (STvM extra from the CPU time of the 1-thread process: wall time on a shared machine measures its other load)' if a.config == 'cpu' else ''}; "
            f"peak memory from a fresh "
            f"process per method; synthetic batch, randomly initialised network "
            f"(pseudo-labels with {min(r['pseudo_classes'] for r in rows)}-{max(r['pseudo_classes'] for r in rows)} classes); "
            f"plain mean teacher = `{BASELINE}` (threshold + ClassMix). "
            f"Reproduce: `python benchmarks/step_bench.py --config {a.config}{' --quick' if a.quick else ''}`.")
    table = bench_table(rows) + note
    print('\n' + table + f"\n\n({time.time() - t0:.0f} s)")
    if a.out:
        out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + '\n')
        raw = out.parent/'raw'/(out.stem + '.json'); raw.parent.mkdir(exist_ok=True)  # results/raw/ is not committed
        raw.write_text(json.dumps(rows, indent=1) + '\n')

if __name__ == '__main__': main()
