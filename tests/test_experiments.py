"""Sweeps through papermill (stand-in notebook and the real training notebook), the published parameter files, the CLI."""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import ROOT, VENV_BIN

from sfda_nb.core import frozen_config
from sfda_nb import experiments as ex


@pytest.fixture
def standin(tmp_path):
    return ex.standin_notebook(tmp_path/'standin.ipynb')


def _runs(**fixed):
    return ex.grid('synth_gta5', 'synth_cityscapes', ['mt_all', 'stvm'], seeds=[0, 1], iters=4, **fixed)


# ---------------------------------------------------------------------------------------------
# sweep machinery, against the stand-in notebook

def test_sweep_failures_retries_and_skips(tmp_path, standin, one_thread):
    runs = _runs()
    bad = tmp_path/'sw'/runs[1].id/'FAIL'; bad.parent.mkdir(parents=True); bad.write_text('')
    res = ex.sweep(runs, 'sw', notebook=standin, root=tmp_path, workers=2, progress=False)
    assert [r['status'] for r in res] == ['done', 'failed', 'done', 'done']
    d = tmp_path/'sw'/runs[1].id
    assert 'stand-in failure requested' in (d/'error.txt').read_text()
    assert 'Traceback' in (d/'error.txt').read_text()
    fails = [json.loads(l) for l in (tmp_path/'sw'/'failures.jsonl').read_text().splitlines()]
    assert [f['id'] for f in fails] == [runs[1].id] and fails[0]['returncode'] == 1
    # every run has its own executed notebook next to its own out_dir, and its parameters
    for r in runs:
        rd = tmp_path/'sw'/r.id
        assert (rd/'run.ipynb').is_file() and (rd/'params.yaml').is_file() and (rd/'out').is_dir()
    assert (tmp_path/'sw'/runs[0].id/'out'/'metrics.json').is_file()
    # second invocation: the three done runs are skipped, the failed one is retried and succeeds
    bad.unlink()
    res = ex.sweep(runs, 'sw', notebook=standin, root=tmp_path, workers=2, progress=False)
    assert [r['status'] for r in res] == ['skipped', 'done', 'skipped', 'skipped']
    assert not (d/'error.txt').exists()
    assert set(ex.Sweep(runs, 'sw', standin, tmp_path).status().values()) == {'done'}
    assert len(ex.collect(tmp_path/'sw')) == 4


def test_stale_runs_are_moved_aside_and_rerun(tmp_path, standin, one_thread):
    runs = _runs()[:1]
    ex.sweep(runs, 'sw', notebook=standin, root=tmp_path, progress=False)
    first = json.loads((tmp_path/'sw'/runs[0].id/'out'/'metrics.json').read_text())
    assert first['config']['iters'] == 4
    changed = [ex.RunSpec(runs[0].id, {**runs[0].params, 'iters': 6})]
    sw = ex.Sweep(changed, 'sw', standin, tmp_path)
    assert sw.status() == {runs[0].id: 'stale'}
    assert [r['status'] for r in sw.run(progress=False)] == ['done']
    assert json.loads((tmp_path/'sw'/runs[0].id/'out'/'metrics.json').read_text())['config']['iters'] == 6
    kept = list((tmp_path/'sw'/'.stale').iterdir())
    assert len(kept) == 1 and (kept[0]/'out'/'metrics.json').is_file()  # the old result is kept, not deleted
    assert len(ex.collect(tmp_path)) == 1  # and .stale is not collected


def test_interrupted_run_is_resumed(tmp_path, standin, one_thread):
    runs = _runs()[:1]
    out = tmp_path/'sw'/runs[0].id/'out'; out.mkdir(parents=True)
    (out/'log.jsonl').write_text('{"iter": 1}\n')  # what a killed run leaves behind
    sw = ex.Sweep(runs, 'sw', standin, tmp_path)
    assert sw.status() == {runs[0].id: 'incomplete'}
    assert [r['status'] for r in sw.run(progress=False)] == ['done']
    import yaml
    assert yaml.safe_load((tmp_path/'sw'/runs[0].id/'params.yaml').read_text())['resume'] is True


def test_timeout_stops_the_run_and_records_it(tmp_path, standin, one_thread):
    runs = _runs(sleep=60.0)[:1]
    t0 = time.time()
    res = ex.sweep(runs, 'sw', notebook=standin, root=tmp_path, timeout=15, progress=False)
    assert time.time() - t0 < 45
    assert res[0]['status'] == 'failed' and 'timeout after 15' in (tmp_path/'sw'/runs[0].id/'error.txt').read_text()


def test_workers_get_their_share_of_threads(tmp_path, one_thread):
    import nbformat
    nb = tmp_path/'env.ipynb'
    cells = [nbformat.v4.new_code_cell("out_dir = ''\nseed = 0", metadata={'tags': ['parameters']}),
             nbformat.v4.new_code_cell("import os, json, pathlib\np = pathlib.Path(out_dir); p.mkdir(parents=True, exist_ok=True)\n"
                                       "(p/'metrics.json').write_text(json.dumps({'config': {'seed': seed}, 'omp': os.environ['OMP_NUM_THREADS'], "
                                       "'exe': __import__('sys').executable}))")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), nb)
    runs = [ex.RunSpec(f's{i}', {'seed': i}) for i in range(2)]
    ex.sweep(runs, 'env', notebook=nb, root=tmp_path, workers=2, threads=None, progress=False)
    m = json.loads((tmp_path/'env'/'s0'/'out'/'metrics.json').read_text())
    assert m['omp'] == str(max(1, ex._n_cpus() // 2))
    assert Path(m['exe']).resolve() == Path(sys.executable).resolve()  # the kernel is this interpreter


# ---------------------------------------------------------------------------------------------
# the published parameter files

def test_config_files_are_train_configs():
    from sfda_nb.train import TrainConfig
    files = ex.config_files()
    assert sorted(p.name for p in (ROOT/'configs').glob('*.yaml')) == sorted(p.name for p in files.values())
    for name, f in files.items():
        raw = ex.load_config(f)
        cfg = frozen_config(TrainConfig, raw)  # unknown keys or wrong types raise here
        assert (cfg.source, cfg.target) == ex.PUBLISHED[name]
        assert (cfg.arch, cfg.crop, cfg.batch_size, cfg.iters) == ('deeplabv2_r101', (512, 512), 2, 20000)
        assert (cfg.optimizer, cfg.lr, cfg.head_lr_mult, cfg.weight_decay, cfg.poly_power) == ('sgd', 2.5e-4, 10.0, 5e-4, 0.9)
        assert (cfg.ema_alpha, cfg.metric_lr, cfg.proxy_lr_mult, cfg.eval_max_images) == (0.999, 1e-4, 100.0, 0)
        assert all(isinstance(v, (int, float, str, list)) for v in raw.values())


def test_config_files_fail_fast_without_data(tmp_path):
    from sfda_nb import train
    from sfda_nb.train import TrainConfig
    for name, f in ex.config_files().items():
        cfg = frozen_config(TrainConfig, ex.load_config(f), data_root=str(tmp_path/'nodata'), out_dir=str(tmp_path/name), device='cpu')
        t0 = time.time()
        with pytest.raises(FileNotFoundError) as e: train.prepare(cfg)
        assert time.time() - t0 < 10
        msg = str(e.value)
        assert 'dataset not found' in msg and 'Expected layout' in msg, msg
        assert ex.PUBLISHED[name][1] in msg  # it names the target dataset it looked for
        assert not (tmp_path/name).exists() or not any((tmp_path/name).iterdir())  # nothing written


def test_config_file_through_papermill_fails_fast(tmp_path, one_thread):
    "The documented command `papermill nbs/05_train.ipynb out.ipynb -f configs/gta5_cityscapes.yaml` stops at the data."
    nb = ROOT/'nbs'/'05_train.ipynb'
    assert json.loads(nb.read_text())['metadata'].get('kernelspec'), \
        f"{nb} has no kernelspec, so plain `papermill {nb.name} out.ipynb` cannot pick a kernel: convert it with `jupytext --set-kernel python3`"
    r = subprocess.run([str(VENV_BIN/'papermill'), str(nb), str(tmp_path/'out.ipynb'), '-f', str(ROOT/'configs'/'gta5_cityscapes.yaml'),
                        '-p', 'data_root', str(tmp_path/'nodata'), '-p', 'out_dir', str(tmp_path/'run')],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0
    err = ex.notebook_error(tmp_path/'out.ipynb')
    assert err.startswith('FileNotFoundError') and 'cityscapes dataset not found' in err, err[:2000] + r.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# the command line

def test_cli_dry_run_lists_the_embedded_sweep(tmp_path):
    pytest.importorskip('sfda_nb.cli')
    r = subprocess.run([sys.executable, '-m', 'sfda_nb.cli', 'sweep', '--dry-run', '--root', str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    n = 6 * 4 * 3 + (12 - 3) * 3  # 6 settings × 4 methods × 3 seeds, plus the ablation minus the 3 pairs methods cover
    assert lines[-1].startswith(f'{n} runs in {tmp_path}/embedded: {n} pending'), lines[-1]
    assert sum('synth_cityscapes-synth_nthu_taipei__stvm__s' in l for l in lines) == 3


def test_cli_rejects_typos_before_running(tmp_path):
    with pytest.raises(ex.ConfigError, match="'itres'"):
        ex.main(['--setting', 'gta5', '--set', 'itres=5', '--root', str(tmp_path)])
    with pytest.raises(ex.ConfigError, match='mocha'):
        ex.main(['--setting', 'gta5', '--methods', 'mocha', '--root', str(tmp_path)])
    assert not (tmp_path/'embedded').exists()


# ---------------------------------------------------------------------------------------------
# a real (tiny) sweep through the training notebook

def test_real_tiny_sweep(tmp_path, one_thread, monkeypatch):
    "Two runs of the embedded GTA5 setting through nbs/05_train.ipynb; their metrics tabulate, and a rerun skips them."
    monkeypatch.setenv('SFDA_RUNS', str(tmp_path/'runs'))  # the small source model below is cached here, not in runs/
    runs = ex.grid('synth_gta5', 'synth_cityscapes', ['source_only', 'stvm'], seeds=[0], iters=4, eval_every=2, eval_max_images=4,
                   batch_size=2, crop=(32, 32), source_iters=20, metric_warmup=2, n_per_class=64)
    ex.check_runs(runs)
    res = ex.sweep(runs, 'tiny', root=tmp_path/'runs', workers=2, progress=False, timeout=900)
    errs = {r['id']: (tmp_path/'runs'/'tiny'/r['id']/'error.txt').read_text()[-3000:] for r in res if r['status'] != 'done'}
    assert not errs, errs
    df = ex.collect(tmp_path/'runs'/'tiny')
    assert list(df.method) == ['source_only', 'stvm'] and df.protocol.tolist() == ['cs19', 'cs19']
    m = json.loads(Path(df.path[1]).read_text())
    assert m['config']['iters'] == 4 and [e['iter'] for e in m['history']] == [2, 4]
    t = ex.benchmark_table(df, 'synth_gta5', 'synth_cityscapes')
    assert list(t.index) == ['source_only', 'stvm'] and len([c for c in t.columns if not c.startswith(('mIoU', 'n'))]) == 19
    assert abs(t.loc['stvm', 'mIoU19'] - m['miou']) < 1e-9
    files = ex.export(df, tmp_path/'results', 'tiny')
    assert all(f.stat().st_size < 100_000 for f in files)
    assert len(ex.curves(df).query("metric == 'loss'")) > 0
    res = ex.sweep(runs, 'tiny', root=tmp_path/'runs', progress=False)
    assert [r['status'] for r in res] == ['skipped', 'skipped']
