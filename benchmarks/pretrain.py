"""Pretrain the SmallSegNet encoder in the pretraining world (the miniature's ImageNet) and print its sha256.

    OMP_NUM_THREADS=1 python benchmarks/pretrain.py OUT.pt [key=value ...]

Keys are `sfda_nb.pretrain.PretrainConfig` fields (values parsed as JSON). The committed
`sfda_nb/weights/small_backbone.pt` was made with the command recorded in results/calibration/README.md;
CI reruns it for a few iterations (iters=3) and checks the committed file's sha256.
"""
import json, sys
from sfda_nb import models, pretrain
from sfda_nb.core import frozen_config, sha256_file

def main(args):
    if not args: sys.exit(__doc__)
    kw = {}
    for a in args[1:]:
        k, v = a.split('=', 1)
        try: kw[k] = json.loads(v)
        except json.JSONDecodeError: kw[k] = v
    cfg = frozen_config(pretrain.PretrainConfig, kw)
    path = pretrain.pretrain_backbone(cfg, args[0], overwrite=True)
    meta = models.load_checkpoint(path)['meta']
    print(f"backbone {path}: {meta['train_seconds']:.0f}s, final loss {meta['loss_curve'][-1][1]:.3f}, sha256 {sha256_file(path)}")

if __name__ == '__main__': main(sys.argv[1:])
