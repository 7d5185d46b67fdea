"""A calibration row of benchmarks/calibrate.py with the target's training stream *not* rescaled
(scale=None, as the source recipe), instead of data.get_dataset's default random scale 0.5-1.5:
does the rescaling cap what the adaptation loop can learn in its budget?

    python benchmarks/probes/loop_noscale.py ROW TAG 'LOOP-JSON'
"""
import functools, json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sfda_nb import data, train
import calibrate

_get = data.get_dataset
def no_scale(name, split, *a, **kw):
    if kw.get('mode') == 'train': kw['scale'] = None
    return _get(name, split, *a, **kw)
data.get_dataset = no_scale
row, tag, loop = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m = calibrate.run_row(row, 'gta5', loop, tag)
print('ROW', row + tag, loop, round(calibrate.numbers(m, calibrate.ROWS[row][1])[0], 2), flush=True)
