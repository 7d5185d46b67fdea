"""Predict throughput at 1024×512: images per second of `predict.predict` over a folder of 1024×512 JPEGs with the small
model (and its metric network, so that reliability maps are written too), everything included (reading, the forward
pass, writing four PNG/JPEG files per image). Writes a Markdown table (default results/predict_bench.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/predict_bench.py [--images 16] [--batch-size 4] [--device cpu]

The input-check pass (`data.scan_folder` decodes every image once before predicting) is timed separately.
"""
import argparse, json, os, platform, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sfda_nb import metric, models, predict, data
from sfda_nb.core import save_checkpoint


def setup(d:Path, n:int) -> tuple:
    "A run folder (small model + metric network, random weights) and a folder of n 1024×512 JPEGs."
    torch.manual_seed(0)
    net = models.build_model('small', 19)
    ck = models.save_model(d/'run'/'teacher.pt', net, protocol='cs19')
    save_checkpoint(metric.MetricLearner(net.feat_dim, 19).checkpoint(), d/'run'/'metric.pt')
    (d/'run'/'metrics.json').write_text('{"reliability": "metric", "config": {}}')  # an STvM run: predict asks its strategy for maps
    rng = np.random.default_rng(0)
    (d/'images').mkdir()
    for i in range(n): Image.fromarray(rng.integers(0, 256, (512, 1024, 3), np.uint8)).save(d/'images'/f'{i:04d}.jpg', quality=90)
    return ck, d/'images'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=16); p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--device', default='cpu'); p.add_argument('--out', default='results/predict_bench.md')
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='sfda_predict_bench_') as t:
        ck, imgs = setup(Path(t), a.images)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter(); data.scan_folder(imgs); scan = time.perf_counter() - t0
        rows = []
        for metric_arg in ('auto', 'none'):
            t0 = time.perf_counter()
            s = predict.predict(ck, imgs, Path(t)/f'out_{metric_arg}', batch_size=a.batch_size, device=a.device,
                                reliability=metric_arg, progress=False)
            rows.append((metric_arg, s['predicted'], time.perf_counter() - t0))
    head = (f"Predict throughput at 1024×512 (`benchmarks/predict_bench.py --images {a.images} --batch-size {a.batch_size} "
            f"--device {a.device}`), small model, {torch.get_num_threads()} torch thread(s), {platform.processor() or platform.machine()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average before/after "
            f"{load0:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes slow it down).\n\n"
            "| outputs | images | seconds | images/s |\n| --- | --- | --- | --- |\n")
    body = ''.join(f"| label, colour, overlay{', reliability' if m == 'auto' else ''} | {n} | {sec:.1f} | {n / sec:.2f} |\n"
                   for m, n, sec in rows)
    text = head + body + f"\nInput check (decode every image once, before predicting): {scan:.1f} s for {a.images} images.\n"
    print(text)
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.tmp'); tmp.write_text(text); os.replace(tmp, out)
    rec = {'size': [1024, 512], 'images': a.images, 'batch_size': a.batch_size, 'device': a.device, 'threads': torch.get_num_threads(),
           'images_per_s': {('with_reliability' if m == 'auto' else 'without_reliability'): round(n / sec, 3) for m, n, sec in rows},
           'seconds': {m: round(sec, 1) for m, n, sec in rows}, 'scan_seconds': round(scan, 2), 'load_average': round(load0, 1)}
    js = out.with_suffix('.json'); tmp = js.with_suffix('.jtmp'); tmp.write_text(json.dumps(rec, indent=1)); os.replace(tmp, js)


if __name__ == '__main__': main()
