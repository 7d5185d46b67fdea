"""Train a source model (or find it in the cache adaptation runs use) and print its mIoUs.

Usage: python tools/train_source.py [key=value ...]
  keys are `sfda_nb.source_models.SourceConfig` fields; values are read by `sfda_nb.core.parse_value`
  (a Python literal, true/false/null, else the text itself).
  Without `out=...` the model goes to (or is found in) runs/source_models, the cache that
  `source_models.source_checkpoint` and the adaptation runs of 05_train use.

Examples:
  python tools/train_source.py threads=2                       # the default embedded source model
  python tools/train_source.py source=synth_synthia threads=2  # the SYNTHIA-like one (protocol synthia16)
"""
import sys, time

from sfda_nb import models, source_models
from sfda_nb.core import ConfigError, frozen_config, parse_kv

def main(args):
    try: kw = parse_kv(args)
    except ConfigError as e: sys.exit(f"{e}\n\n{__doc__}")
    t0 = time.time()
    if kw.get('out'):
        path = source_models.train_source(frozen_config(source_models.SourceConfig, kw))
    else:
        src = kw.pop('source', 'synth_gta5')
        path = source_models.source_checkpoint(src, kw.pop('protocol', None), kw.pop('arch', 'small'), kw.pop('target', None), **kw)
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
