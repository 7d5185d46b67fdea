"""Per-class IoU of a source model on held-out source images and on the target, beside the field's published
source-only profile (GTA5 → Cityscapes, DeepLabV2-ResNet101 without adaptation, 36.6 mIoU19: the "Baseline
(ResNet)" row of Tsai et al., "Learning to Adapt Structured Output Space", CVPR 2018, Table 1).

    python benchmarks/probes/class_profile.py [SOURCE_CKPT]

With no argument it reads the default embedded source model from the cache (`source_models.source_checkpoint`, which
trains it once if it is missing). Only the checkpoint's recorded evaluations are read; no evaluation is re-run.
"""
import sys
from pathlib import Path
from sfda_nb import models, source_models

FIELD_SOURCE_ONLY = dict(zip(
    ['road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation', 'terrain',
     'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle'],
    [75.8, 16.8, 77.2, 12.5, 21.0, 25.5, 30.1, 20.1, 81.3, 24.6, 70.3, 53.8, 26.4, 49.9, 17.2, 25.9, 6.5, 25.3, 36.0]))

def main(path=None):
    if path is None: path = source_models.source_checkpoint('synth_gta5', target='synth_cityscapes')
    meta = models.load_model(path, device='cpu')[1]
    src, tgt = (meta['evals'][k] for k in ('synth_gta5/val', 'synth_cityscapes/val'))
    print(f"source model {Path(path).name}: synth_gta5 val {src['miou']:.1f}, synth_cityscapes val {tgt['miou']:.1f} mIoU19\n")
    print('| class | source val (in-domain) | target | field source-only, GTA5 → CS |')
    print('| --- | --- | --- | --- |')
    fmt = lambda v: 'n/a (absent)' if v is None else f'{v:.1f}'  # a class in neither ground truth nor prediction
    for c, f in FIELD_SOURCE_ONLY.items(): print(f"| {c} | {fmt(src['iou'][c])} | {fmt(tgt['iou'][c])} | {f:.1f} |")
    low = lambda d: sum(d[c] is not None and d[c] < 3 for c in FIELD_SOURCE_ONLY)
    print(f"\nclasses under 3 IoU: source val {low(src['iou'])}, target {low(tgt['iou'])}, field {low(FIELD_SOURCE_ONLY)}")
    print(f"target / in-domain mIoU: {tgt['miou'] / src['miou']:.2f}")

if __name__ == '__main__': main(sys.argv[1] if len(sys.argv) > 1 else None)
