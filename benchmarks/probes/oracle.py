"""The ceiling of the adaptation loop: the student learns from the target's *ground-truth* labels
(strong augmentation, no mixing, EMA teacher), the same optimiser, lr schedule and iterations.

    python benchmarks/probes/oracle.py '{"lr": 3e-4, "iters": 300, "source_ckpt": "..."}' NAME [OUT_ROOT]
"""
import sys, json, tempfile
from pathlib import Path
import torch
from sfda_nb import train, classmix, models

kw, name = json.loads(sys.argv[1]), sys.argv[2]
root = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.gettempdir())/'sfda_probes'
cfg = train.TrainConfig(**{'seed': 100, 'eval_every': 0, 'threads': 1, 'method': 'mt_all', 'out_dir': str(root/name), **kw})
run = train.prepare(cfg); a = run.a
for it in range(cfg.iters):
    b = next(run.stream)
    if not b['has_label'].all(): sys.exit(f"{cfg.target} train images have no labels: the oracle needs them")
    x, y = b['img'].float().div(255), b['label'].long()
    models.set_lr(a.opt, models.poly_lr(cfg.lr, it, cfg.iters, cfg.poly_power))
    a.student.train()
    loss = train.weighted_ce(a.student(classmix.strong_augment(x, a.gen)).logits, y, torch.ones(y.shape))
    a.opt.zero_grad(); loss.backward(); a.opt.step(); a.teacher.update(a.student)
    if (it + 1) % 100 == 0:
        print(f'iter {it + 1}: teacher {train.score(run, a.teacher).miou:.1f} student {train.score(run, a.student).miou:.1f}', flush=True)
