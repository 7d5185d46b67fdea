"""One short fixed-seed run of every method, its headline mIoU printed as JSON: run it on two commits to show that a
refactoring changed no result.

    OMP_NUM_THREADS=1 python tools/same_mious.py [--iters 12] [--eval-max-images 20] > mious.json
"""
import argparse, json, sys, tempfile
from pathlib import Path

METHODS = ('source_only', 'adabn', 'tent', 'mt_threshold', 'mt_all', 'stvm', 'loop_oracle', 'gt_filtered')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--iters', type=int, default=12)
    ap.add_argument('--eval-max-images', type=int, default=20)
    ap.add_argument('--methods', default=','.join(METHODS))
    a = ap.parse_args(argv)
    from sfda_nb import train
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in a.methods.split(','):
            cfg = train.TrainConfig(method=m, iters=a.iters, eval_every=0, eval_max_images=a.eval_max_images, seed=0,
                                    out_dir=str(Path(tmp)/m))
            out[m] = train.run(cfg)['miou']
            print(m, out[m], file=sys.stderr, flush=True)
    print(json.dumps(out))

if __name__ == '__main__': main()
