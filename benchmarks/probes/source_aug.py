"""A source model trained with the student's strong augmentation (colour jitter + blur, as DACS) on every
source batch: does a photometrically robust source model change the picture?

    python benchmarks/probes/source_aug.py '{"iters": 2000}' OUT.pt
"""
import sys, json
import torch
from sfda_nb import models, classmix, source_models

kw, out = json.loads(sys.argv[1]), sys.argv[2]
gen, fit = torch.Generator().manual_seed(0), source_models.fit_supervised

class Augmented:
    "The source batch stream with `classmix.strong_augment` applied to every image batch."
    def __init__(self, stream): self.stream = stream
    def __next__(self):
        b = dict(next(self.stream)); b['img'] = classmix.strong_augment(b['img'].float().div(255), gen); return b

source_models.fit_supervised = lambda model, stream, *a: fit(model, Augmented(stream), *a)
cfg = models.frozen_config(source_models.SourceConfig, {'source': 'synth_gta5', 'target': 'synth_cityscapes', 'threads': 1, 'out': out, **kw})
m = torch.load(source_models.train_source(cfg, verbose=False), weights_only=True)
print('SOURCE', kw, out, {k: round(v['miou'], 1) for k, v in m['meta']['evals'].items()}, flush=True)
