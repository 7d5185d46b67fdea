"""Every entry point on every kind of target (issue 19 §2): the CLI demo, papermill, `train.run` and a sweep, each on the
embedded benchmark, a labelled folder, an unlabelled folder, a missing real dataset and a folder holding a corrupt image.
Each cell either succeeds and prints a summary that fits its target, or ends in one line that names the problem."""
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, VENV_BIN
from sfda_nb import cli, experiments as ex, models, synth, train
from sfda_nb.core import Expected, frozen_config

TINY = dict(method='mt_threshold', iters=2, batch_size=2, crop='32,32', eval_every=0, eval_max_images=2, threads=1)
# what each target must show: a success's summary line, or the first line of its error
EXPECT = {'embedded': ('ok', 'mIoU'), 'labelled_folder': ('ok', 'mIoU'), 'unlabelled_folder': ('ok', 'no labels, so no mIoU'),
          'missing_real': ('error', 'DatasetMissing: cityscapes dataset not found'),
          'corrupt_folder': ('error', 'UnreadableFile: cannot read image')}


@pytest.fixture(scope='module')
def targets(tmp_path_factory):
    "Target name -> run parameters, on folders written here (images 64×32, labelIds), and a seeded small source model."
    base = tmp_path_factory.mktemp('targets')
    rng = np.random.default_rng(0)
    for d in ('imgs', 'labels', 'bad', 'nodata'): (base/d).mkdir()
    for i in range(6):
        img = Image.fromarray(rng.integers(0, 255, (32, 64, 3), dtype=np.uint8))
        img.save(base/'imgs'/f'{i}.png'); img.save(base/'bad'/f'{i}.png')
        Image.fromarray(rng.choice(np.array([7, 11, 21, 23, 26], np.uint8), (32, 64))).save(base/'labels'/f'{i}.png')
    (base/'bad'/'9.png').write_bytes(b'not a png')
    torch.manual_seed(0)
    src = base/'src.pt'
    models.save_model(src, models.build_model('small', 19), {'note': 'seeded random init, for tests'}, protocol='cs19')
    synth.ensure_benchmark()
    common = dict(TINY, source_ckpt=str(src))
    return {'embedded': dict(common, target='synth_cityscapes'),
            'labelled_folder': dict(common, target=f"folder:{base/'imgs'},labels={base/'labels'},size=64x32"),
            'unlabelled_folder': dict(common, target=f"folder:{base/'imgs'},size=64x32"),
            'missing_real': dict(common, target='cityscapes', data_root=str(base/'nodata')),
            'corrupt_folder': dict(common, target=f"folder:{base/'bad'},size=64x32")}


def _env(runs):
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'SFDA_RUNS': str(runs)}


def _in_parallel(fn, items):
    with ThreadPoolExecutor(2) as pool: return dict(zip(items, pool.map(fn, items)))


def _first_line(text): return next((l for l in text.strip().splitlines() if l.strip()), '')


def test_cli_demo(targets, tmp_path):
    def demo(name):
        args = [sys.executable, '-m', 'sfda_nb.cli', 'demo', '--baseline', 'none']
        for k, v in targets[name].items(): args += [f'--{k}', str(v)]
        return subprocess.run(args, capture_output=True, text=True, env=_env(tmp_path/'runs'), cwd=ROOT, timeout=600)
    for name, r in _in_parallel(demo, list(targets)).items():
        kind, text = EXPECT[name]
        if kind == 'ok':
            assert r.returncode == 0 and text in r.stdout and 'run folder' in r.stdout, (name, r.stderr[-3000:])
        else:  # status 2, the message first, no traceback
            assert r.returncode == 2 and _first_line(r.stderr).startswith(text) and 'Traceback' not in r.stderr, (name, r.stderr[-3000:])


def test_papermill(targets, tmp_path):
    def run(name):
        out = tmp_path/f'{name}.ipynb'
        args = [str(VENV_BIN/'papermill'), str(ROOT/'nbs'/'05_train.ipynb'), str(out), '-k', 'python3', '--cwd', str(ROOT/'nbs')]
        for k, v in targets[name].items(): args += ['-p', k, str(v)]
        r = subprocess.run(args, capture_output=True, text=True, env=_env(tmp_path/'runs'), cwd=ROOT, timeout=600)
        nb = json.loads(out.read_text()) if out.exists() else {'cells': []}
        outs = [o for c in nb['cells'] for o in c.get('outputs', [])]
        return r, ''.join(''.join(o.get('text', '')) for o in outs), [o for o in outs if o.get('output_type') == 'error']
    for name, (r, printed, errors) in _in_parallel(run, list(targets)).items():
        kind, text = EXPECT[name]
        if kind == 'ok':
            assert r.returncode == 0 and text in printed and not errors, (name, r.stderr[-3000:])
        else:  # the notebook's error is the message itself, one block and no traceback; papermill's own output ends with it
            assert r.returncode != 0 and len(errors) == 1, (name, r.stderr[-3000:])
            assert len(errors[0]['traceback']) == 1 and errors[0]['traceback'][0].startswith(text), (name, errors[0]['traceback'][:3])
            assert text in r.stderr.split('Exception encountered at')[-1]


def test_train_run(targets, tmp_path, monkeypatch):
    monkeypatch.setenv('SFDA_RUNS', str(tmp_path/'runs'))
    for name, params in targets.items():
        kind, text = EXPECT[name]
        cfg = frozen_config(train.TrainConfig, params)
        if kind == 'ok':
            m = train.run(cfg)
            assert text in cli.report({cfg.method: m}, cfg, m['seconds']), name
        else:
            with pytest.raises(Expected) as e: train.run(cfg)
            assert f"{type(e.value).__name__}: {e.value}".startswith(text), (name, str(e.value))


def test_sweep(targets, tmp_path):
    specs = [ex.RunSpec(name, params) for name, params in targets.items()]
    res = {r['id']: r for r in ex.sweep(specs, 'matrix', root=tmp_path, workers=2, progress=False, timeout=600)}
    for name in targets:
        kind, text = EXPECT[name]
        if kind == 'ok':
            assert res[name]['status'] == 'done', (name, res[name].get('error'))
        else:  # the run's error names the problem; the others finish
            assert res[name]['status'] == 'failed' and text in res[name]['error'], (name, res[name].get('error'))


def test_missing_dataset_message_says_how_to_point_at_data(tmp_path):
    "§3: the message names the folder, the layout, where to get it, and both ways of pointing at data."
    from sfda_nb import data
    with pytest.raises(Expected) as e: data.get_dataset('cityscapes', 'train', root=tmp_path)
    first, *rest = str(e.value).splitlines()
    assert first.startswith('cityscapes dataset not found') and str(tmp_path/'cityscapes') in first
    assert 'data_root=' in str(e.value) and 'SFDA_DATA' in str(e.value) and 'leftImg8bit' in str(e.value)


def test_quiet_notes_and_no_import_circle(tmp_path):
    "§5: a folder note is its message alone (no echoed source line); §6: predict does not import train."
    for i in range(2): Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path/f'{i}.png')
    (tmp_path/'notes.txt').write_text('x')
    code = f"from sfda_nb import data; data.scan_folder({str(tmp_path)!r})"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stderr.strip().splitlines() == [f"sfda_nb:0: FolderWarning: {tmp_path}: 1 files are not png/jpg images and are skipped: notes.txt"], r.stderr
    r = subprocess.run([sys.executable, '-c', "import sys, sfda_nb.predict; print('sfda_nb.train' in sys.modules)"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.strip() == 'False', r.stderr


def test_corrupt_image_message_in_predict(tmp_path, targets):
    "§4: predict on a folder with a corrupt image: one line naming the file, nothing about training."
    r = subprocess.run([sys.executable, '-m', 'sfda_nb.cli', 'predict', '--ckpt', targets['embedded']['source_ckpt'],
                        '--images', str(Path(targets['corrupt_folder']['target'].split(',')[0][len('folder:'):])),
                        '--out', str(tmp_path/'pred')], capture_output=True, text=True, env=_env(tmp_path/'runs'), cwd=ROOT, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and '9.png' in r.stderr, r.stderr
    assert 'trained' not in r.stderr and 'Traceback' not in r.stderr


def test_a_changed_folder_is_another_run(targets, tmp_path):
    "§1: a folder target whose images changed is never shown the old result: the default folder follows its content."
    import shutil
    src_dir = Path(targets['unlabelled_folder']['target'].split(',')[0][len('folder:'):])
    imgs = tmp_path/'imgs'; shutil.copytree(src_dir, imgs)
    params = dict(targets['unlabelled_folder'], target=f"folder:{imgs},size=64x32")
    def demo():
        args = [sys.executable, '-m', 'sfda_nb.cli', 'demo', '--baseline', 'none']
        for k, v in params.items(): args += [f'--{k}', str(v)]
        r = subprocess.run(args, capture_output=True, text=True, env=_env(tmp_path/'runs'), cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout
    first = demo()
    assert 'finished with the same parameters' in demo()  # unchanged: shown again
    Image.fromarray(np.full((32, 64, 3), 7, np.uint8)).save(imgs/'new.png')
    again = demo()
    assert 'finished with the same parameters' not in again
    folder = lambda out: next(l.split()[2] for l in out.splitlines() if l.strip().startswith('run folder'))
    assert folder(again) != folder(first)
