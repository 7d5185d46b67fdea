"""Time a full render of the embedded benchmark (sfda_nb.synth) at its default settings.

    python benchmarks/render_bench.py                 # into a fresh temporary folder, removed afterwards
    python benchmarks/render_bench.py --root data     # into a given data root (replaces earlier synth_* renders there)

Prints the wall time, the images per second and the number of images. The issue's budget is < 60 s for the
default benchmark on a 2-core machine.
"""
import argparse, os, shutil, sys, tempfile, time
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
    try:
        t = time.perf_counter()
        render_benchmark(root, size=tuple(a.size), seed=a.seed, workers=a.workers)
        dt = time.perf_counter() - t
    finally:
        if a.root is None: shutil.rmtree(root.parent, ignore_errors=True)
    print(f"rendered {n} images ({len(DOMAINS)} domains, {a.size[0]}x{a.size[1]}, workers={a.workers}, "
          f"{os.cpu_count()} CPUs) in {dt:.1f} s: {n/dt:.1f} images/s")
    return dt


if __name__ == '__main__':
    main()
