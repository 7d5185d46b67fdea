"""How much of an adaptation batch is padding: the target stream's random scale-and-crop, with and without `pad`.

    python benchmarks/probes/padding.py [BATCHES]

Replays the exact crops of the default adaptation stream (synth_cityscapes train, crop 128×128, scale (0.5, 1.5),
batch 4, seed 0) on an all-white image of the dataset's size, so that every black pixel of the result is padding.
Before commit fc3e022 the adaptation stream padded (`pad=True`); it now raises the scale instead (`pad=False`).
"""
import sys
import numpy as np, torch
from sfda_nb import data
from sfda_nb.core import default_data_root
from sfda_nb.synth import ensure_benchmark

def padded_fraction(pad:bool, batches:int) -> np.ndarray:
    ensure_benchmark(default_data_root())
    ds = data.get_dataset('synth_cityscapes', 'train', mode='train', crop=(128, 128))
    W, H = data.image_size(ds.pairs[0][0])  # synth_* are read at their native size
    tt = data.TrainTransform(crop=(128, 128), scale=(0.5, 1.5), pad=pad)
    white, lab = torch.full((3, H, W), 255, dtype=torch.uint8), torch.zeros(H, W, dtype=torch.long)
    stream = data.BatchStream(ds, 4, seed=0)
    out = []
    for it in range(batches):
        imgs = [tt(white, lab, torch.Generator().manual_seed(data.item_seed(k)))[0] for k in stream.keys(it)]
        out.append(float((torch.stack(imgs) == 0).all(1).float().mean()))
    return np.array(out)

if __name__ == '__main__':
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    for pad in (True, False):
        f = padded_fraction(pad, n)
        print(f"pad={pad}: padded pixels per batch over {n} batches: mean {f.mean():.3f}, max {f.max():.3f}")
