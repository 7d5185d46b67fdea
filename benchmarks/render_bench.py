"""Time a full render of the embedded benchmark (sfda_nb.synth) at its default settings.

    python benchmarks/render_bench.py                 # into a fresh temporary folder, removed afterwards
    python benchmarks/render_bench.py --root data     # into a given data root (replaces earlier synth_* renders there)

Prints the wall time, the images per second and the number of images. The issue's budget is < 60 s for the
default benchmark on a 2-core machine.
"""
import argparse, os, resource, shutil, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sfda_nb.synth import DEFAULT_SIZE, DOMAINS, render_benchmark, resolve_counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--root', type=Path, default=None, help='data root to render into (default: a temporary folder)')
    p.add_argument('--workers', type=int, default=2, help='rendering processes (default 2)')
    p.add_argument('--size', type=int, nargs=2, default=DEFAULT_SIZE, metavar=('H', 'W'), help='image size (default 128 256)')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    root = a.root if a.root is not None else Path(tempfile.mkdtemp(prefix='sfda_render_bench_'))/'data'
    n = sum(sum(c.values()) for c in resolve_counts(None, DOMAINS).values())
    cpu = lambda: sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                      for f in ('ru_utime', 'ru_stime'))
    try:
        t, c = time.perf_counter(), cpu()
        render_benchmark(root, size=tuple(a.size), seed=a.seed, workers=a.workers)
        dt, dc = time.perf_counter() - t, cpu() - c
    finally:
        if a.root is None: shutil.rmtree(root.parent, ignore_errors=True)
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(f"rendered {n} images ({len(DOMAINS)} domains, {a.size[0]}x{a.size[1]}, workers={a.workers}, "
          f"{os.cpu_count()} CPUs) in {dt:.1f} s: {n/dt:.1f} images/s")
    print(f"CPU time {dc:.1f} s ({dc/n*1e3:.1f} ms per image, all processes); load average at the end {load:.1f}")
    return dt


if __name__ == '__main__':
    main()
