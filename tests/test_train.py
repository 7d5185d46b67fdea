"""The training notebook as papermill runs it, and runs that survive interruption."""
import ast, json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import ROOT, VENV_BIN

NB = ROOT/'nbs'/'05_train.ipynb'

def _param_cell():
    nb = json.loads(NB.read_text())
    cells = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(cells) == 1, "05_train must have exactly one cell tagged 'parameters'"
    return ''.join(cells[0]['source'])

def test_parameters_cell_mirrors_config():
    "The parameters cell is TrainConfig's lines: names, types, defaults and comments (tools/sync_params.py rewrites it)."
    from sfda_nb.train import TrainConfig, parameters_cell
    import dataclasses
    src = _param_cell()
    assert src == parameters_cell(), "run tools/sync_params.py"
    tree = ast.parse(src)
    cell = {n.target.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.AnnAssign)}
    from sfda_nb.train import strategy_fields
    own = {f.name for f in strategy_fields(builtin=True)}  # a plugin another test loaded is not in the cell
    assert cell == {**{f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name != 'params'},
                    **{k: v for k, v in TrainConfig().params.items() if k in own}}
    assert 'threshold' in cell and 'tau' in cell and 'mocm_gate' in cell  # the strategies' own parameters, declared by them


def test_papermill_sees_every_parameter():
    "papermill's own inspection (what --help-notebook prints) finds every parameter with its type, default and comment."
    import papermill
    from sfda_nb.train import parameter_fields
    seen = papermill.inspect_notebook(str(NB))
    fields = parameter_fields(builtin=True)
    assert list(seen) == [f.name for f in fields]
    for f in fields:
        p = seen[f.name]
        assert (p['inferred_type_name'], p['default'], p['help']) == (f.type, f.default, f.comment), f.name


def test_cli_options_mirror_config():
    "`python -m sfda_nb.cli demo --help` lists every parameter, the strategies' own included, with its comment."
    from sfda_nb import cli
    from sfda_nb.train import parameter_fields
    actions = {a.dest: a for a in cli.config_parser()._actions}
    for f in parameter_fields():
        assert actions[f.name].help.replace('%%', '%') == f'{f.comment} (default {f.default})' and actions[f.name].default is None
    cli.config_parser().format_help()  # a comment with % must not break argparse's formatting


TINY = dict(iters=3, batch_size=2, eval_every=0, eval_max_images=4, source_iters=20, metric_warmup=1, n_per_class=64, threads=1)

def test_papermill_injects_parameters(tmp_path, one_thread):
    "A tiny papermill run: the injected parameters are the ones the run used."
    out = tmp_path/'run'
    args = [str(VENV_BIN/'papermill'), str(NB), str(tmp_path/'out.ipynb'), '-k', 'python3', '--cwd', str(ROOT/'nbs'),
            '-p', 'out_dir', str(out), '-p', 'method', 'mt_all', '-y', 'crop: [64, 64]']
    for k, v in TINY.items(): args += ['-p', k, str(v)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-5000:]
    m = json.loads((out/'metrics.json').read_text())
    assert m['config']['iters'] == 3 and m['config']['method'] == 'mt_all' and m['config']['crop'] == [64, 64]
    assert m['reliability'] == 'none' and m['mix'] == 'classmix'
    log = [json.loads(l) for l in (out/'log.jsonl').read_text().splitlines()]
    assert log[-1]['iter'] == 3
    assert 0 <= m['miou'] <= 100 and len(m['teacher']['last_per_class']) == 19

@pytest.mark.parametrize('student_bn', ['train', 'frozen'])
def test_student_bn_policy(student_bn):
    "student_bn='frozen' keeps the source BN statistics in student and teacher; 'train' lets them follow the target batches."
    import torch
    from sfda_nb import train, models
    from sfda_nb.core import frozen_config
    torch.manual_seed(0)
    cfg = frozen_config(train.TrainConfig, dict(student_bn=student_bn, lr=1e-3, ema_alpha=0.5, method='mt_all', mix='none', teacher_update='ema'))
    student = models.SmallSegNet(19, width=8)
    a = train.build_adaptation(cfg, student, 19, 'cpu')
    bn = lambda m: [x.running_mean.clone() for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    before_s, before_t = bn(student), bn(a.teacher)
    for _ in range(2): train.adapt_step(a, torch.rand(2, 3, 32, 32) * 0.5 + 0.5)  # brighter than anything the init saw
    moved_s = [not torch.equal(b, c) for b, c in zip(before_s, bn(student))]
    moved_t = [not torch.equal(b, c) for b, c in zip(before_t, bn(a.teacher))]
    assert all(moved_s) == all(moved_t) == (student_bn == 'train') and any(moved_s) == (student_bn == 'train')
    assert any(not torch.equal(p, q) for p, q in zip(student.parameters(), a.teacher.model.parameters()))  # the weights learn under both

def test_student_bn_name_checked():
    from sfda_nb import train
    from sfda_nb.core import frozen_config, ConfigError
    with pytest.raises(ConfigError, match="student_bn 'eval'; valid choices: \\['frozen', 'train'\\]"):
        train.resolve(frozen_config(train.TrainConfig, dict(student_bn='eval')))


def test_batch_of_one_cannot_mix():
    "ClassMix/MOCM pair each image with another of the batch: a batch of one would mix an image with itself."
    from sfda_nb import train
    from sfda_nb.core import frozen_config, ConfigError
    with pytest.raises(ConfigError, match=r"mix='classmix' pastes between images .* would hold 1: use batch_size of at least 2 or mix='none'"):
        train.prepare(frozen_config(train.TrainConfig, dict(method='mt_all', batch_size=1)))


def test_metric_init_does_not_depend_on_the_source_cache(tmp_path, monkeypatch, one_thread):
    "Same seed, same source checkpoint: the metric network starts the same whether the source model was just trained or cached."
    import torch
    from sfda_nb import train
    from sfda_nb.core import frozen_config
    monkeypatch.setenv('SFDA_RUNS', str(tmp_path/'runs'))
    def start(name):
        r = train.prepare(frozen_config(train.TrainConfig, dict(iters=1, batch_size=2, source_iters=2, seed=5, threads=1,
                                                                eval_max_images=2, out_dir=str(tmp_path/name))))
        return [p.detach().clone() for p in r.a.reliability.learner.parameters()], r.source_info['sha256']
    (p1, s1), (p2, s2) = start('trained_here'), start('cached')
    assert s1 == s2 and len(list((tmp_path/'runs'/'source_models').glob('*.pt'))) == 1
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


PLUGIN = '''
"A researcher's own module: a reliability strategy and a dataset, each one class and one registry entry."
import torch
from sfda_nb import train, data

@train.RELIABILITY.register('half')
class Half(train.Reliability):
    "Every pseudo-label counts half."
    def __call__(self, t): return torch.full_like(t.conf, 0.5)

class MyStreets(data.CityscapesDataset):
    "A dataset of one's own (here the embedded Cityscapes twin's files, in the Cityscapes layout)."

data.register_dataset('my_streets', data.dataset_spec('synth_cityscapes')._replace(cls=MyStreets, rendered=False, real=None))
'''


def test_new_strategy_and_dataset_through_a_sweep(tmp_path, monkeypatch):
    "Adding a reliability and a dataset is one class and one registry entry each, in a plugin module; a real sweep runs them."
    from sfda_nb import experiments, synth
    (tmp_path/'plug').mkdir(); (tmp_path/'plug'/'sfda_test_plugin.py').write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path/'plug'))  # the sweep reads the plugin's parameters too
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join([str(tmp_path/'plug'), os.environ.get('PYTHONPATH', '')]))
    monkeypatch.setenv('SFDA_RUNS', str(tmp_path/'runs'))
    root = tmp_path/'data'; synth.ensure_benchmark(root)  # the files my_streets reads
    runs = experiments.grid('synth_gta5', 'my_streets', methods='mt_all', reliability='half', seeds=0, plugins='sfda_test_plugin',
                            iters=2, batch_size=2, crop=[32, 32], eval_every=0, eval_max_images=2, source_iters=5, data_root=str(root))
    res = experiments.sweep(runs, name='plugin', root=tmp_path/'runs', progress=False)
    assert [r['status'] for r in res] == ['done'], res
    m = json.loads((tmp_path/'runs'/'plugin'/runs[0].id/'out'/'metrics.json').read_text())
    assert (m['reliability'], m['mix'], m['config']['target'], m['protocol']) == ('half', 'classmix', 'my_streets', 'cs19')
    log = [json.loads(l) for l in (tmp_path/'runs'/'plugin'/runs[0].id/'out'/'log.jsonl').read_text().splitlines()]
    assert log[-1]['rel_mean'] == 0.5


def test_one_version():
    "The version has one home (sfda_nb/__init__.py): the installed package and every metrics.json say the same."
    import importlib.metadata, sfda_nb
    from sfda_nb import models
    assert importlib.metadata.version('sfda_nb') == sfda_nb.__version__ == models.versions()['sfda_nb'] != '0.0.1'
