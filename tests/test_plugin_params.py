"""Your own method in one file (issue 20 §1): a plugin module declares a reliability with a hyper-parameter of its own; a
papermill sweep runs two values of it, and the results table holds both rows. Nothing in sfda_nb is edited for it."""
import json, os, subprocess, sys

import torch

from sfda_nb import experiments as ex, models, synth

PLUGIN = '''"A reliability of my own: the teacher's confidence raised to a power."
from sfda_nb.core import Param
from sfda_nb.reliability import RELIABILITY, Reliability

@RELIABILITY.register('conf_power')
class ConfidencePower(Reliability):
    "The teacher's confidence to the power `conf_gamma` (0: every pixel counts fully; large: only the confident ones)."
    params = (Param('conf_gamma', float, 1.0, 'exponent of the teacher confidence', bounds=(0.0, None)),)
    def __init__(self, gamma=1.0): self.gamma = gamma
    @classmethod
    def build(cls, p, ctx): return cls(p.conf_gamma)
    def __call__(self, t): return t.conf ** self.gamma
'''
TINY = dict(iters=2, batch_size=2, crop=[32, 32], eval_every=0, eval_max_images=2, threads=1)


def _plugin(tmp_path, monkeypatch):
    "The plugin file in its own folder, importable here and in every process this test starts."
    d = tmp_path/'plugins'; d.mkdir()
    (d/'my_reliability.py').write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(d), os.environ.get('PYTHONPATH')])))
    return d


def test_plugin_with_a_parameter_swept_with_papermill(tmp_path, monkeypatch):
    _plugin(tmp_path, monkeypatch)
    torch.manual_seed(0)
    src = tmp_path/'src.pt'
    models.save_model(src, models.build_model('small', 19), {'note': 'seeded random init, for tests'}, protocol='cs19')
    synth.ensure_benchmark()
    runs = ex.grid('synth_gta5', 'synth_cityscapes', 'mt_all', reliability='conf_power', mix='none', seeds=0,
                   vary={'conf_gamma': [0.5, 3.0]}, plugins='my_reliability', source_ckpt=str(src), **TINY)
    assert [r.id for r in runs] == [f'synth_gta5-synth_cityscapes__mt_all__rel-conf_power__mix-none__conf_gamma-{g}__s0' for g in ('0.5', '3.0')]
    res = ex.sweep(runs, 'plugin', root=tmp_path/'runs', workers=2, progress=False, timeout=600)
    assert [r['status'] for r in res] == ['done', 'done'], res
    for r, g in zip(runs, (0.5, 3.0)):  # each run used its own value, recorded with the rest of its config
        m = json.loads((tmp_path/'runs'/'plugin'/r.id/'out'/'metrics.json').read_text())
        assert (m['config']['conf_gamma'], m['reliability'], m['config']['plugins']) == (g, 'conf_power', 'my_reliability')
    t = ex.benchmark_table(ex.collect(tmp_path/'runs'/'plugin'), 'synth_gta5', 'synth_cityscapes', ablations=True)
    rows = [l for l in t.index if l.startswith('mt_all')]
    assert rows == ['mt_all (rel=conf_power, mix=none) [conf_gamma=0.5]', 'mt_all (rel=conf_power, mix=none) [conf_gamma=3.0]'], list(t.index)
    assert t.loc[rows, 'n'].tolist() == [1, 1]


def test_plugin_parameter_on_the_command_line(tmp_path, monkeypatch):
    "With --plugins, the CLI lists the plugin's parameter and refuses a bad value of it in one line."
    _plugin(tmp_path, monkeypatch)
    cmd = [sys.executable, '-m', 'sfda_nb.cli', 'demo', '--plugins', 'my_reliability']
    r = subprocess.run(cmd + ['--help'], capture_output=True, text=True, timeout=300)
    text = ' '.join(r.stdout.split())  # argparse wraps the help
    assert r.returncode == 0 and "--conf_gamma FLOAT, --conf-gamma FLOAT reliability 'conf_power': exponent of the teacher confidence" in text, r.stderr
    r = subprocess.run(cmd + ['--method', 'mt_all', '--reliability', 'conf_power', '--conf_gamma', '-1', '--iters', '1'],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'SFDA_RUNS': str(tmp_path/'runs')})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ['ConfigError: conf_gamma=-1.0 is out of range: it should be in [0.0, inf]'], r.stderr
