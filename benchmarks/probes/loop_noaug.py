"""A calibration row of benchmarks/calibrate.py with the student's strong augmentation switched off
(identity): does the strong augmentation cap what the adaptation loop can learn in its budget?

    python benchmarks/probes/loop_noaug.py ROW TAG 'LOOP-JSON'
"""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sfda_nb import train
import calibrate

_build = train.build_adaptation
def build_plain(*a, **kw):
    ad = _build(*a, **kw); ad.augment = lambda x, gen: x; return ad
train.build_adaptation = build_plain
row, tag, loop = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m = calibrate.run_row(row, 'gta5', loop, tag)
print('ROW', row + tag, loop, round(calibrate.numbers(m, calibrate.ROWS[row][1])[0], 2), flush=True)
