"""Follow the run's configuration through the library: which functions receive the whole `TrainConfig`.

    OMP_NUM_THREADS=1 python tools/cfg_walk.py [--method stvm] [--iters 2]

Runs one tiny `train.run` under `sys.setprofile` and records every call into `sfda_nb` whose arguments
(other than `self`) include a `TrainConfig` (with `--holders`, also an object that holds one as `.cfg`,
such as the run): the whole configuration handed down. Calls are folded into a tree by code
location: a function called many times from the same caller is one node. The walk is the depth-first
tour of that tree from `train.run`: one step down to each callee and one step back up to its caller.
A strategy that receives only its own parameters, or a value read from the config, is not a step.
Prints the tree and the counts (functions, files, steps, steps back up).
"""
import argparse, collections, os, sys, tempfile
from pathlib import Path

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--method', default='stvm')
    ap.add_argument('--iters', type=int, default=2)
    ap.add_argument('--holders', action='store_true', help='also follow objects that hold the config as .cfg (the run)')
    a = ap.parse_args(argv)
    import sfda_nb
    from sfda_nb import train
    pkg = str(Path(sfda_nb.__file__).parent)
    Cfg = train.TrainConfig
    stack, edges = [], collections.OrderedDict()  # stack: (code key or None) per Python frame

    def carries(v):  # the config itself, or an object holding it as `.cfg` (the run, the loop's state)
        return isinstance(v, Cfg) or (a.holders and isinstance(getattr(v, '__dict__', {}).get('cfg'), Cfg))

    def key(code): return (Path(code.co_filename).name, code.co_qualname if hasattr(code, 'co_qualname') else code.co_name)

    def prof(frame, event, arg):
        if event == 'call':
            code = frame.f_code
            k = None
            if code.co_filename.startswith(pkg):
                names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
                if any(carries(frame.f_locals.get(n)) for n in names if n != 'self'): k = key(code)
            parent = next((p for p in reversed(stack) if p is not None), None)
            if k is not None and parent is not None and parent != k: edges.setdefault((parent, k), None)
            stack.append(k if k is not None else None)
        elif event == 'return' and stack: stack.pop()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = train.TrainConfig(method=a.method, iters=a.iters, out_dir=str(Path(tmp)/'run'), eval_max_images=4)
        sys.setprofile(prof)
        try: train.run(cfg)
        finally: sys.setprofile(None)
    children = collections.defaultdict(list)
    for p, c in edges: children[p].append(c)
    root = ('train.py', 'run')
    seen, steps, up, lines = set(), 0, 0, []

    def tour(n, depth):
        nonlocal steps, up
        seen.add(n)
        lines.append('  ' * depth + f'{n[0]}:{n[1]}')
        for c in children[n]:
            if c in seen: continue  # a function reached before is not walked again
            steps += 1
            tour(c, depth + 1)
            steps += 1
            up += 1
    tour(root, 0)
    print('\n'.join(lines))
    files = sorted({f for f, _ in seen})
    print(f"\nfunctions receiving the whole TrainConfig: {len(seen)} in {len(files)} files ({', '.join(files)})")
    print(f"walk from train.run: {steps} steps, {up} of them back up to a caller")

if __name__ == '__main__': main()
