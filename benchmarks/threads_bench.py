"""How a run degrades when another process is busy on the machine: the same 50-image evaluation alone and beside a
CPU-bound process, under three thread settings. Writes a Markdown table (default results/threads_bench.md).

    .venv/bin/python benchmarks/threads_bench.py [--images 50] [--repeats 3] [--out results/threads_bench.md]

Each measurement runs in a fresh process (the OpenMP settings are read when torch starts). The load is one
`while True: pass` process per core but one. Times are medians of `--repeats` runs; compare the ratios.
"""
import argparse, json, os, platform, statistics, subprocess, sys, time
from pathlib import Path

CHILD = r'''
import time, torch
from sfda_nb import models, evaluation
torch.manual_seed(0)
net = models.build_model('small', 19).eval()
g = torch.Generator().manual_seed(0)
batches = [{'img': (torch.rand(1, 3, 128, 256, generator=g) * 255).to(torch.uint8),
            'label': torch.randint(0, 19, (1, 128, 256), generator=g)} for _ in range({n})]
evaluation.evaluate(net, batches[:2], 'cs19')  # warm-up: allocations, thread pool
t0 = time.perf_counter(); evaluation.evaluate(net, batches, 'cs19'); print(time.perf_counter() - t0)
'''

SETTINGS = {  # name -> environment of the measured process
    "torch's default (2 threads, OpenMP threads spin while waiting)": {'OMP_NUM_THREADS': '2', 'OMP_WAIT_POLICY': 'ACTIVE'},
    "2 threads, passive waiting (sfda_nb's default)": {'OMP_NUM_THREADS': '2', 'OMP_WAIT_POLICY': 'PASSIVE'},
    "1 thread (tests, sweeps with one thread per run)": {'OMP_NUM_THREADS': '1', 'OMP_WAIT_POLICY': 'PASSIVE'},
}

def measure(env_over, n, repeats, busy):
    load = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(busy)]
    try:
        time.sleep(0.5)
        env = {**os.environ, **env_over}
        return statistics.median(float(subprocess.run([sys.executable, '-c', CHILD.replace('{n}', str(n))], env=env,
                                                      capture_output=True, text=True, check=True).stdout) for _ in range(repeats))
    finally:
        for p in load: p.kill(); p.wait()

def main():
    p = argparse.ArgumentParser(); p.add_argument('--images', type=int, default=50); p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--out', default=str(Path(__file__).resolve().parents[1]/'results'/'threads_bench.md'))
    a = p.parse_args()
    cores = len(os.sched_getaffinity(0)); busy = max(cores - 1, 1)
    load0 = os.getloadavg()[0]
    rows = []
    for name, env in SETTINGS.items():
        quiet, loaded = measure(env, a.images, a.repeats, 0), measure(env, a.images, a.repeats, busy)
        rows.append((name, quiet, loaded)); print(f"{name}: {quiet:.2f} s alone, {loaded:.2f} s beside {busy} busy process(es)", flush=True)
    out = [f"# Threads under load\n\nA {a.images}-image evaluation of the small model (128×256, batch 1), median of {a.repeats} fresh "
           f"processes, alone and beside {busy} CPU-bound process(es). Machine: {platform.processor() or platform.machine()}, "
           f"{cores} CPUs; load average when the benchmark started: {load0:.1f} (other work on the machine counts too). "
           f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/threads_bench.py`.\n",
           '| setting | alone (s) | beside a busy process (s) | slow-down |', '| --- | --- | --- | --- |']
    out += [f"| {n} | {q:.2f} | {l:.2f} | {l / q:.1f}× |" for n, q, l in rows]
    Path(a.out).write_text('\n'.join(out) + '\n'); print(f"wrote {a.out}")
    json.dump([dict(setting=n, alone=q, loaded=l) for n, q, l in rows], open(Path(a.out).with_suffix('.json'), 'w'), indent=1)

if __name__ == '__main__': main()
