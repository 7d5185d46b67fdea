"""Train a source model (or find it in the cache adaptation runs use) and print its mIoUs.

Usage: python tools/train_source.py [key=value ...]
  keys are `sfda_nb.models.SourceConfig` fields; values are parsed as JSON, else kept as strings.
  Without `out=...` the model goes to (or is found in) runs/source_models, the cache that
  `models.source_checkpoint` and the adaptation runs of 05_train use.

Examples:
  python tools/train_source.py threads=2                       # the default embedded source model
  python tools/train_source.py source=synth_synthia threads=2  # the SYNTHIA-like one (protocol synthia16)
"""
import json, sys, time
from pathlib import Path

from sfda_nb import models
from sfda_nb.core import frozen_config

def parse(args):
    kw = {}
    for a in args:
        if '=' not in a: sys.exit(f"argument {a!r} is not key=value\n\n{__doc__}")
        k, v = a.split('=', 1)
        try: kw[k] = json.loads(v)
        except json.JSONDecodeError: kw[k] = v
    return kw

def main(args):
    kw = parse(args)
    t0 = time.time()
    if kw.get('out'):
        path = models.train_source(frozen_config(models.SourceConfig, kw))
    else:
        src = kw.pop('source', 'synth_gta5')
        path = models.source_checkpoint(src, kw.pop('protocol', None), kw.pop('arch', 'small'), kw.pop('target', None), **kw)
    _, meta = models.load_model(path)
    print(f"checkpoint: {path}  (sha256 {meta['sha256'][:12]}, this call {time.time() - t0:.0f}s)")
    print(f"trained {meta['iters']} iterations in {meta['train_seconds']:.0f}s on {meta['device']} with {meta['threads']} threads")
    mious = {k: v['miou'] for k, v in meta['evals'].items()}
    for k, v in mious.items():
        sub = ''.join(f", {s} {x:.1f}" for s, x in meta['evals'][k]['sub'].items())
        print(f"{k}: mIoU {v:.1f} ({meta['evals'][k]['protocol']}{sub})")
    if len(mious) == 2:
        (s, a), (t, b) = mious.items()
        print(f"domain gap {s} - {t}: {a - b:.1f} points")

if __name__ == '__main__': main(sys.argv[1:])
