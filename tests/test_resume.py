"""Runs that survive interruption (chapter 08_scale, issue 7): SIGKILL and resume bit-for-bit, the NaN guard, atomic checkpoints."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from sfda_nb import models, synth
from sfda_nb.core import load_checkpoint, save_checkpoint

# a small STvM run: the metric learner (with its AdamW state), MOCM, the EMA warm-up and periodic evaluation all take part
TINY = dict(method='stvm', iters=16, metric_warmup=2, batch_size=2, crop='64,64', eval_every=4, eval_max_images=4,
            n_per_class=64, ckpt_every=4, threads=1)


@pytest.fixture(scope='module')
def source_ckpt(tmp_path_factory):
    "The embedded benchmark (rendered once, default root) and a seeded small source model, saved like a trained one."
    synth.ensure_benchmark()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('src')/'small.pt'
    models.save_model(path, models.build_model('small', 19), {'note': 'seeded random init, for tests'}, protocol='cs19')
    return str(path)


def _cmd(out, src, **over):
    args = [sys.executable, '-m', 'sfda_nb.cli', 'demo', '--baseline', 'none', '--out_dir', str(out), '--source_ckpt', src]
    for k, v in {**TINY, **over}.items(): args += [f'--{k}', str(v)]
    return args


def _env():
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def _run(out, src, **over):
    r = subprocess.run(_cmd(out, src, **over), capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    return r


def _results(out):
    "What must not depend on the interruption: every score, the history, and the final weights."
    m = json.loads((out/'metrics.json').read_text())
    keep = {k: m[k] for k in ('miou', 'teacher', 'student', 'source_only', 'history')}
    teacher = load_checkpoint(out/'teacher.pt')['state_dict']
    metric = load_checkpoint(out/'metric.pt')['state_dict']
    return keep, teacher, metric


def test_sigkill_and_resume_equals_uninterrupted(tmp_path, source_ckpt):
    "Kill a run with SIGKILL once its first resumable state exists, resume it: metrics and weights equal an uninterrupted run's bit for bit."
    ref = _run(tmp_path/'ref', source_ckpt)
    assert ref.returncode == 0, ref.stderr[-3000:]

    out = tmp_path/'killed'
    p = subprocess.Popen(_cmd(out, source_ckpt), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    t0 = time.time()
    while not (out/'state.pt').exists():
        assert p.poll() is None, "the run ended before writing a resumable state"
        assert time.time() - t0 < 240, "no state.pt after 240 s"
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (out/'metrics.json').exists(), "the run finished before it could be killed; make TINY longer"
    killed_at = load_checkpoint(out/'state.pt')['it']
    assert 0 < killed_at < 2 + 16

    res = _run(out, source_ckpt, resume=True)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _results(tmp_path/'ref'), _results(out)
    assert a[0] == b[0]  # miou, per-class IoUs, confusion matrices, history: identical
    for k in a[1]: assert torch.equal(a[1][k], b[1][k]), f"teacher {k} differs after resuming from iteration {killed_at}"
    for k in a[2]:
        if isinstance(a[2][k], torch.Tensor): assert torch.equal(a[2][k], b[2][k]), f"metric learner {k} differs"
    # a finished run is not run again: resume=True returns its metrics
    again = _run(out, source_ckpt, resume=True)
    assert again.returncode == 0 and json.loads((out/'metrics.json').read_text())['history'] == a[0]['history']


def test_nonfinite_loss_names_iteration_and_keeps_last_good_state(tmp_path, source_ckpt):
    "A diverging run (lr 1e8) stops with NonFiniteLoss naming the iteration; state.pt is the last good state: finite, loadable."
    out = tmp_path/'nan'
    r = _run(out, source_ckpt, method='mt_all', lr=1e8, ckpt_every=1, eval_every=0)
    assert r.returncode != 0
    msg = [l for l in r.stderr.splitlines() if 'NonFiniteLoss' in l]
    assert msg, r.stderr[-3000:]
    # the loss, or (first) the weights/BN statistics of a step whose loss was still finite
    found = re.search(r'(?:at|after) iteration (\d+)', msg[-1])
    assert found and 'state.pt' in msg[-1], msg[-1]
    bad_it = int(found.group(1))
    sd = load_checkpoint(out/'state.pt')
    assert sd['it'] <= bad_it, (sd['it'], bad_it)  # the state before the bad step (or earlier), never after
    for name in ('student', 'teacher'):
        for k, v in sd[name].items():
            if v.is_floating_point(): assert torch.isfinite(v).all(), f"{name}.{k} is not finite in the kept state"
    assert not (out/'metrics.json').exists()


def test_torn_checkpoint_write_never_replaces_good_state(tmp_path):
    "A write that dies half-way (an error, or SIGKILL) leaves the previous state.pt byte-identical and loadable."
    path = tmp_path/'state.pt'
    good = {'it': 4, 'w': torch.arange(10.)}
    save_checkpoint(good, path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # serialisation fails after the tensor was written
        save_checkpoint({'it': 8, 'w': torch.zeros(10**6), 'bad': lambda: 0}, path, overwrite=True)
    assert path.read_bytes() == before and not list(tmp_path.glob('.state.*'))  # core.atomic_path's temporary: none left
    # SIGKILL in the middle of writing a ~200 MB state
    code = ("import sys, torch; from sfda_nb.core import save_checkpoint; "
            "save_checkpoint({'it': 8, 'w': torch.ones(50 * 2**20)}, sys.argv[1], overwrite=True)")
    p = subprocess.Popen([sys.executable, '-c', code, str(path)], env=_env())
    t0 = time.time()
    while not any(f.stat().st_size > 0 for f in tmp_path.glob('.state.*.tmp.pt') if f.exists()):
        assert p.poll() is None and time.time() - t0 < 60, "the writer finished before it could be killed"
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL); p.wait()
    assert path.read_bytes() == before
    assert load_checkpoint(path)['it'] == 4


def test_nonfinite_weights_are_never_saved(tmp_path, source_ckpt):
    "A step that overflows the weights while its loss was finite: the next checkpoint refuses to save them."
    from sfda_nb import train
    from sfda_nb.cli import parse_config
    cfg = parse_config(['--out_dir', str(tmp_path/'w'), '--source_ckpt', source_ckpt, '--method', 'mt_all', '--iters', '8',
                        '--batch_size', '2', '--crop', '64,64', '--eval_every', '0', '--eval_max_images', '2', '--ckpt_every', '2', '--threads', '1'])
    class Overflow(train.Callback):
        order = 35  # after the step, before the checkpoint (40)
        def after_step(self, run, out):
            if run.a.it == 4: next(run.a.student.parameters()).data[0] = float('inf')
    with pytest.raises(train.NonFiniteLoss, match='non-finite student weights after iteration 3'):
        train.run(cfg, extra_cbs=[Overflow()])
    assert load_checkpoint(tmp_path/'w'/'state.pt')['it'] == 2


def test_resume_continues_with_more_iters_and_refuses_other_parameters(tmp_path, source_ckpt):
    "A finished run resumed with more iters trains on; with another parameter it is refused, naming it, without a traceback."
    out = tmp_path/'r'
    short = dict(iters=4, eval_every=2, ckpt_every=0)
    assert _run(out, source_ckpt, **short).returncode == 0
    first = json.loads((out/'metrics.json').read_text())
    again = _run(out, source_ckpt, **short)  # the same command again: the stored result, no traceback
    assert again.returncode == 0 and 'finished with the same parameters' in again.stdout and 'Traceback' not in again.stderr
    for over in (dict(resume=True, lr=3e-4), dict(lr=3e-4)):  # with or without resume: refused, naming the field
        bad = _run(out, source_ckpt, **over, **{k: v for k, v in short.items() if k not in over})
        assert bad.returncode == 2 and 'Traceback' not in bad.stderr
        assert bad.stderr.strip().splitlines()[-1].startswith('RunExists: the run in') and 'lr 0.01 -> 0.0003' in bad.stderr
    fewer = _run(out, source_ckpt, **dict(short, iters=2))
    assert fewer.returncode == 2 and 'iters 4 -> 2' in fewer.stderr and 'Traceback' not in fewer.stderr
    more = _run(out, source_ckpt, resume=True, **dict(short, iters=6))
    assert more.returncode == 0, more.stderr[-3000:]
    m = json.loads((out/'metrics.json').read_text())
    assert [e['iter'] for e in m['history']] == [2, 4, 6] and m['history'][:2] == first['history'] and m['config']['iters'] == 6


def test_refused_checkpoint_leaves_nothing_behind(tmp_path):
    "A source checkpoint that is not one: one clear error, and no run folder is created."
    bad = tmp_path/'bad.pt'; bad.write_bytes(b'not a checkpoint at all')
    r = _run(tmp_path/'never', str(bad))
    assert r.returncode != 0 and not (tmp_path/'never').exists()


def test_changed_parameters_or_checkpoint_never_show_an_old_result(tmp_path, source_ckpt):
    "In the default folder (no out_dir) a changed value, or another file at the same checkpoint path, is a new run, never the old result."
    ck, runs = tmp_path/'src.pt', tmp_path/'runs'
    ck.write_bytes(Path(source_ckpt).read_bytes())
    def demo(**over):
        args = [sys.executable, '-m', 'sfda_nb.cli', 'demo', '--baseline', 'none', '--source_ckpt', str(ck)]
        for k, v in {**TINY, 'iters': 2, 'eval_every': 2, 'ckpt_every': 0, **over}.items(): args += [f'--{k}', str(v)]
        r = subprocess.run(args, capture_output=True, text=True, env={**_env(), 'SFDA_RUNS': str(runs)}, cwd=ROOT, timeout=300)
        folder = re.search(r'run folder\s+(\S+)', r.stdout)
        return r, folder and Path(folder.group(1))
    first, d1 = demo()
    assert first.returncode == 0, first.stderr[-2000:]
    again, d2 = demo()
    assert d2 == d1 and 'finished with the same parameters' in again.stdout
    lr, d3 = demo(lr=0.05, ema_alpha=0.5)
    assert lr.returncode == 0 and d3 != d1 and 'finished with the same parameters' not in lr.stdout
    cfg = json.loads((d3/'metrics.json').read_text())['config']
    assert (cfg['lr'], cfg['ema_alpha']) == (0.05, 0.5)
    torch.manual_seed(1)  # another model at the same path: another run
    models.save_model(ck, models.build_model('small', 19), {'note': 'another seeded init'}, protocol='cs19', overwrite=True)
    other, d4 = demo()
    assert other.returncode == 0 and d4 not in (d1, d3) and 'finished with the same parameters' not in other.stdout
    assert json.loads((d4/'metrics.json').read_text())['source_ckpt']['sha256'] != json.loads((d1/'metrics.json').read_text())['source_ckpt']['sha256']
    ck.write_text('not a checkpoint')  # garbage at the same path: one line, status 2, no old result
    bad, d5 = demo()
    assert bad.returncode == 2 and d5 is None and 'Traceback' not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
