"""One adaptation run with TrainConfig overrides, printing the teacher/student mIoU at each evaluation.

    python benchmarks/probes/adapt.py '{"lr": 3e-4, "iters": 400}' NAME [OUT_ROOT]

Seed 100 by default: the probes of results/adaptation_probes.md tune nothing on the reported seeds 0-2.
"""
import sys, json, tempfile
from pathlib import Path
from sfda_nb import train

kw, name = json.loads(sys.argv[1]), sys.argv[2]
root = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.gettempdir())/'sfda_probes'
cfg = train.TrainConfig(**{'seed': 100, 'eval_every': 100, 'threads': 1, 'out_dir': str(root/name), **kw})
m = train.run(cfg)
hist = [(e['iter'], round(e['teacher']['miou'], 1), round(e['student']['miou'], 1)) for e in m['history']]
print('RESULT', name, kw, 'source', round(m['source_only']['miou'], 1), '(iter, teacher, student):', hist,
      f"{m['seconds']:.0f}s", flush=True)
