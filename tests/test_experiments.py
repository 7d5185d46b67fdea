"""Sweeps through papermill on the real training notebook (tiny parameters), the published parameter files, the CLI."""
import json, os, shutil, subprocess, sys, time, uuid
from pathlib import Path
import dataclasses, psutil, pytest, yaml
from conftest import ROOT, VENV_BIN

from sfda_nb.core import frozen_config
from sfda_nb import experiments as ex

# Parameters small enough for a CPU: what is tested is the sweep's plumbing, not a method.
TINY = dict(iters=2, batch_size=2, crop=[32, 32], eval_every=0, eval_max_images=2, source_iters=5, metric_warmup=1, threads=1)
SETTING = ('synth_gta5', 'synth_cityscapes')


@pytest.fixture(scope='module')
def shared(tmp_path_factory):
    "One data root (the embedded benchmark is rendered once, on the first run) and one source-model cache for the module."
    base = tmp_path_factory.mktemp('sweeps')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SFDA_RUNS', str(base/'runs'))  # the tiny source model is cached here, not in the project's runs/
        for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): mp.setenv(k, '1')
        yield dict(base=base, data_root=str(base/'data'))


def tiny(shared, methods, **kw):
    return ex.grid(*SETTING, methods, seeds=[0], **TINY, data_root=shared['data_root'], **kw)


@pytest.fixture(scope='module')
def first(shared):
    "source_only and stvm, plus one run of a method the training notebook does not know, on two workers."
    runs = tiny(shared, ['source_only', 'stvm', 'no_such_method'])
    t0 = time.time()
    res = ex.sweep(runs, 'sw', root=shared['base'], workers=2, progress=False, timeout=1200)
    return dict(runs=runs, res=res, dir=shared['base']/'sw', seconds=time.time() - t0)


def _err(d, rid): return (d/rid/'error.txt').read_text()[-3000:] if (d/rid/'error.txt').exists() else ''


# ---------------------------------------------------------------------------------------------
# the sweep machinery, on the real training notebook

def test_failure_is_recorded_and_the_others_finish(first):
    runs, res, d = first['runs'], first['res'], first['dir']
    assert [r['status'] for r in res[:2]] == ['done', 'done'], {r.id: _err(d, r.id) for r in runs[:2]}
    assert res[2]['status'] == 'failed'
    err = (d/runs[2].id/'error.txt').read_text()
    assert err.startswith('ConfigError') and 'no_such_method' in err and 'Traceback' not in err, err[:2000]  # an expected error: its message alone
    fails = [json.loads(l) for l in (d/'failures.jsonl').read_text().splitlines()]
    assert fails[0]['id'] == runs[2].id and fails[0]['returncode'] == 1
    for r in runs:  # every run has its executed notebook next to its own out_dir, and its parameters
        assert (d/r.id/'run.ipynb').is_file() and (d/r.id/'params.yaml').is_file() and (d/r.id/'out').is_dir()
    assert yaml.safe_load((d/runs[1].id/'params.yaml').read_text())['out_dir'] == str(d/runs[1].id/'out')


def test_rerun_skips_done_runs_and_retries_failed_ones(first, shared):
    runs = first['runs']
    res = ex.sweep(runs, 'sw', root=shared['base'], progress=False)
    assert [r['status'] for r in res] == ['skipped', 'skipped', 'failed']
    assert ex.Sweep(runs, 'sw', root=shared['base']).status() == {runs[0].id: 'done', runs[1].id: 'done', runs[2].id: 'failed'}
    assert len((first['dir']/'failures.jsonl').read_text().splitlines()) == 2


def test_tables_from_real_metrics(first, tmp_path):
    df = ex.collect(first['dir'])
    assert list(df.method) == ['source_only', 'stvm'] and df.protocol.tolist() == ['cs19', 'cs19']
    m = json.loads(Path(df.path[1]).read_text())
    assert m['config']['iters'] == 2 and m['config']['crop'] == [32, 32]
    t = ex.benchmark_table(df, *SETTING)
    assert list(t.index) == ['source_only', 'stvm'] and len([c for c in t.columns if not c.startswith(('mIoU', 'n', '%'))]) == 19
    assert abs(t.loc['stvm', 'mIoU19'] - m['miou']) < 1e-9
    assert t[ex.GAP_CLOSED].isna().all()  # no oracle run in this sweep: the column is blank
    dt = ex.detail_table(df).loc[(' → '.join(SETTING), 'stvm')]
    assert (dt.teacher_last, dt.teacher_best, dt.student_last, dt.student_best) == \
        (m['teacher']['last'], m['teacher']['best'], m['student']['last'], m['student']['best'])
    files = ex.export(df, tmp_path/'results', 'tiny')
    assert all(f.stat().st_size < 100_000 for f in files)
    assert len(ex.curves(df).query("metric == 'loss'")) > 0


def test_stale_run_is_moved_aside_and_rerun(first, shared, tmp_path):
    run = first['runs'][1]
    shutil.copytree(first['dir']/run.id, tmp_path/'sw'/run.id)  # a finished run, then its parameters change
    changed = ex.RunSpec(run.id, {**run.params, 'iters': 3})
    sw = ex.Sweep([changed], 'sw', root=tmp_path)
    assert sw.status() == {run.id: 'stale'}
    assert [r['status'] for r in sw.run(progress=False)] == ['done'], _err(tmp_path/'sw', run.id)
    assert json.loads((tmp_path/'sw'/run.id/'out'/'metrics.json').read_text())['config']['iters'] == 3
    kept = list((tmp_path/'sw'/'.stale').iterdir())
    assert len(kept) == 1 and json.loads((kept[0]/'out'/'metrics.json').read_text())['config']['iters'] == 2  # kept, not deleted
    assert len(ex.collect(tmp_path)) == 1  # and .stale is not collected


def test_interrupted_run_is_resumed(first, shared, tmp_path):
    run = tiny(shared, ['mt_all'])[0]
    out = tmp_path/'sw'/run.id/'out'; out.mkdir(parents=True)
    (out/'log.jsonl').write_text('{"iter": 1}\n')  # what a run killed before its first checkpoint leaves behind
    sw = ex.Sweep([run], 'sw', root=tmp_path)
    assert sw.status() == {run.id: 'incomplete'}
    assert [r['status'] for r in sw.run(progress=False)] == ['done'], _err(tmp_path/'sw', run.id)
    assert yaml.safe_load((tmp_path/'sw'/run.id/'params.yaml').read_text())['resume'] is True


def test_timeout_stops_the_run_and_its_kernel_then_a_rerun_finishes(first, shared, tmp_path, monkeypatch):
    mark = uuid.uuid4().hex
    monkeypatch.setenv('SFDA_TEST_MARK', mark)  # inherited by papermill and its kernel: finds them and nothing else
    run = tiny(shared, ['mt_all'])[0]
    run = ex.RunSpec(run.id, {**run.params, 'iters': 1500})  # long enough to outlast the timeout (a source-only run may not)
    t0 = time.time()
    res = ex.sweep([run], 'sw', root=tmp_path, timeout=8, progress=False)
    assert time.time() - t0 < 60
    assert res[0]['status'] == 'failed' and 'timeout after 8' in (tmp_path/'sw'/run.id/'error.txt').read_text()
    def marked(p):
        try: return p.environ().get('SFDA_TEST_MARK') == mark
        except (psutil.Error, OSError): return False
    left = [p for p in psutil.process_iter() if marked(p) and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [p.cmdline() for p in left]
    res = ex.sweep([run], 'sw', root=tmp_path, progress=False)
    assert res[0]['status'] == 'done', _err(tmp_path/'sw', run.id)


def test_workers_get_their_share_of_threads(tmp_path, one_thread):
    "A probe notebook (not a stand-in of the training notebook) reports the environment each worker's kernel sees."
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
        from sfda_nb.train import with_preset
        assert cfg.preset == 'deeplabv2' and with_preset(cfg) == dataclasses.replace(cfg, teacher_bn='batch', target_scale=(0.5, 1.5), jitter=0.2)


def test_config_files_fail_fast_without_data(tmp_path):
    from sfda_nb import train
    from sfda_nb.train import TrainConfig
    ckpt = tmp_path/'source.pth'; ckpt.write_bytes(b'')  # a placeholder: the data check comes before the checkpoint is read
    for name, f in ex.config_files().items():
        cfg = frozen_config(TrainConfig, ex.load_config(f), data_root=str(tmp_path/'nodata'), out_dir=str(tmp_path/name), device='cpu')
        with pytest.raises(ex.ConfigError, match='is a real dataset: pass source_ckpt'): train.prepare(cfg)  # no checkpoint given
        cfg = frozen_config(TrainConfig, {**ex.load_config(f), 'source_ckpt': str(ckpt)}, data_root=str(tmp_path/'nodata'),
                            out_dir=str(tmp_path/name), device='cpu')
        t0 = time.time()
        with pytest.raises(FileNotFoundError) as e: train.prepare(cfg)
        assert time.time() - t0 < 10
        msg = str(e.value)
        assert 'dataset not found' in msg and 'Expected layout' in msg, msg
        assert ex.PUBLISHED[name][1] in msg  # it names the target dataset it looked for
        assert not (tmp_path/name).exists() or not any((tmp_path/name).iterdir())  # nothing written


def test_config_file_through_papermill_fails_fast(tmp_path, one_thread):
    "The documented command `papermill nbs/05_train.ipynb out.ipynb -f configs/gta5_cityscapes.yaml -p source_ckpt ...` stops at the data."
    nb = ROOT/'nbs'/'05_train.ipynb'
    assert json.loads(nb.read_text())['metadata'].get('kernelspec'), \
        f"{nb} has no kernelspec, so plain `papermill {nb.name} out.ipynb` cannot pick a kernel: convert it with `jupytext --set-kernel python3`"
    ckpt = tmp_path/'gta5_source.pth'; ckpt.write_bytes(b'')  # a placeholder: the data check comes first
    r = subprocess.run([str(VENV_BIN/'papermill'), str(nb), str(tmp_path/'out.ipynb'), '-f', str(ROOT/'configs'/'gta5_cityscapes.yaml'),
                        '-p', 'source_ckpt', str(ckpt), '-p', 'data_root', str(tmp_path/'nodata'), '-p', 'out_dir', str(tmp_path/'run')],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0
    err = ex.notebook_error(tmp_path/'out.ipynb')
    assert err.startswith('DatasetMissing') and 'cityscapes dataset not found' in err, err[:2000] + r.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# the command line

def test_cli_dry_run_lists_the_embedded_sweep(tmp_path):
    pytest.importorskip('sfda_nb.cli')
    r = subprocess.run([sys.executable, '-m', 'sfda_nb.cli', 'sweep', '--dry-run', '--root', str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    methods, covered = len(ex.method_order()), len(ex.ablation_pairs())
    n = (6 * methods - 4) * 3 + (12 - covered) * 3  # 6 settings × every method (no oracle on the 4 NTHU cities) × 3 seeds,
    assert lines[-1].startswith(f'{n} runs in {tmp_path}/embedded: {n} pending'), lines[-1]  # plus the ablation minus covered pairs
    assert sum('synth_cityscapes-synth_nthu_taipei__stvm__s' in l for l in lines) == 3
    assert not any('synth_nthu_taipei__oracle' in l for l in lines)  # the NTHU cities have no labelled train split


def test_cli_rejects_typos_before_running(tmp_path):
    with pytest.raises(ex.ConfigError, match="'itres'"):
        ex.main(['--setting', 'gta5', '--set', 'itres=5', '--root', str(tmp_path)])
    with pytest.raises(ex.ConfigError, match='mocha'):
        ex.main(['--setting', 'gta5', '--methods', 'mocha', '--root', str(tmp_path)])
    with pytest.raises(ex.ConfigError, match='is not key=value'):
        ex.main(['--setting', 'gta5', '--set', 'iters', '--root', str(tmp_path)])
    assert not (tmp_path/'embedded').exists()
