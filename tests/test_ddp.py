"""Several processes through torchrun (chapter 08_scale, issue 7), tested on the CPU with gloo.

Run as a script under torchrun, this file is also the worker of `test_ranks_stay_identical`.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Exactly equal to one process (up to the order of floating-point sums) is expected only where nothing depends on
# how the batch is split: frozen BN (batch statistics would be per slice), no mixing (ClassMix pairs images inside a
# slice), and no metric network (its loss is not a sum over pixels). mt_all with mix='none' on a DeepLabV2 with
# FrozenBatchNorm2d is such a run; strong augmentation takes the global batch's draws on every rank.
EQUAL = dict(method='mt_all', mix='none', teacher_update='ema', jitter=0.2, lr=1e-3, head_lr_mult=1.0, iters=6, batch_size=4, crop=(64, 64), eval_every=3, eval_max_images=6, threads=1)
TOL = 1e-6  # max |teacher weight difference|, 2 processes vs 1 (measured: ~1e-7); the weights themselves move by ~6e-4 in these 6 steps


def _env():
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    "The embedded benchmark (rendered once, default root) and seeded source models: a tiny frozen-BN DeepLabV2 and the small net."
    from sfda_nb import models, synth
    synth.ensure_benchmark()
    d = tmp_path_factory.mktemp('src')
    torch.manual_seed(0)
    models.save_model(d/'dl.pt', models.build_model('deeplabv2_r101', 19, layers=[1, 1, 1, 1], width=8, bn='frozen'), {}, protocol='cs19')
    torch.manual_seed(0)
    models.save_model(d/'small.pt', models.build_model('small', 19), {}, protocol='cs19')
    return d


def test_two_processes_equal_one(tmp_path, sources):
    "`scale.launch` (torchrun, gloo, 2 processes) gives the 1-process result with the same global batch, within TOL."
    from sfda_nb import scale
    from sfda_nb.core import load_checkpoint
    cfg = dict(EQUAL, source_ckpt=str(sources/'dl.pt'))
    one = subprocess.run([sys.executable, '-m', 'sfda_nb.cli', 'demo', '--out_dir', str(tmp_path/'one'),
                          *scale.cli_args(scale.frozen_config(scale.train.TrainConfig, cfg))],
                         capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    m2 = scale.launch(dict(cfg, out_dir=str(tmp_path/'two')), nproc=2, threads=1, timeout=300, verbose=False)
    m1 = json.loads((tmp_path/'one'/'metrics.json').read_text())
    t1, t2 = (load_checkpoint(tmp_path/n/'teacher.pt')['state_dict'] for n in ('one', 'two'))
    src = load_checkpoint(sources/'dl.pt')['state_dict']
    diff = max((t1[k].double() - t2[k].double()).abs().max().item() for k in t1)
    moved = max((t1[k].double() - src[k].double()).abs().max().item() for k in t1)
    assert diff <= TOL and moved > 100 * TOL, (diff, moved)
    # evaluation gathered over ranks: the same images, the same confusion matrices (up to pixels on a near-tie)
    assert [h['iter'] for h in m1['history']] == [h['iter'] for h in m2['history']] == [3, 6]
    for h1, h2 in zip(m1['history'], m2['history']):
        for who in ('teacher', 'student'):
            assert h1[who]['n_images'] == h2[who]['n_images'] == 6
            c1, c2 = torch.tensor(h1[who]['conf']), torch.tensor(h2[who]['conf'])
            assert c1.sum() == c2.sum() and (c1 - c2).abs().sum() <= 1e-4 * c1.sum(), who
            assert abs(h1[who]['miou'] - h2[who]['miou']) <= 0.05
    assert m2['config']['batch_size'] == 4 and (tmp_path/'two'/'log.jsonl').exists()


def test_ranks_stay_identical(tmp_path, sources):
    "STvM (metric network, MOCM, train-mode BN) on 2 processes: student, teacher, metric net and proxies identical on both ranks."
    args = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', __file__,
            str(tmp_path/'run'), str(sources/'small.pt')]
    r = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    s0, s1 = (torch.load(tmp_path/'run'/f'rank{i}.pt', weights_only=True) for i in (0, 1))
    for part in ('student', 'teacher', 'learner'):
        for k in s0[part]:
            if isinstance(s0[part][k], torch.Tensor): assert torch.equal(s0[part][k], s1[part][k]), f"{part}.{k} differs between ranks"
    assert s0['teacher_step'] == s1['teacher_step'] == 4
    assert s0['rel_loss_differs']  # the ranks saw different images (their local metric losses differ) ...
    assert not torch.equal(s0['student']['stem.1.running_mean'], torch.zeros_like(s0['student']['stem.1.running_mean']))


def _worker(out, src):
    "Under torchrun: a short STvM run, then every rank saves what must be identical."
    from sfda_nb import train, scale
    from sfda_nb.core import frozen_config
    cfg = frozen_config(train.TrainConfig, dict(method='stvm', iters=4, metric_warmup=1, batch_size=4, crop=(64, 64),
                                                eval_every=0, eval_max_images=4, n_per_class=64, threads=1,
                                                source_ckpt=src, out_dir=out))
    r = train.prepare(cfg, env=scale.environment(cfg))
    losses = []
    r.cbs.append(type('L', (train.Callback,), {'after_step': lambda self, run, o: losses.append(o.aux['metric_loss'])})())
    train.fit(r)
    import torch.distributed as dist
    rank = dist.get_rank()
    other = [None, None]; dist.all_gather_object(other, [float(l) for l in losses])
    torch.save({'student': train.models.unwrap(r.a.student).state_dict(), 'teacher': r.a.teacher.state_dict(),
                'learner': {k: v for k, v in r.a.reliability.learner.state_dict().items() if isinstance(v, torch.Tensor)},
                'teacher_step': int(r.a.teacher.step), 'rel_loss_differs': other[0] != other[1]},
               Path(out)/f'rank{rank}.pt')
    dist.barrier(); dist.destroy_process_group()  # both ranks leave together (gloo's threads can abort a rank exiting alone)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_step_never_syncs_on_cuda():
    "The GPU twin of the meta-device check in 08_scale: an STvM step under torch.cuda.set_sync_debug_mode('error')."
    from sfda_nb import scale, train
    for method in ('stvm', 'mt_threshold'):
        a, x = scale.bench_adaptation(method, 'small', 4, (128, 128), 'cuda')
        train.adapt_step(a, x, warmup=True); train.adapt_step(a, x)  # allocations, lazy optimiser state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode('error')
        try: train.adapt_step(a, x, warmup=True); train.adapt_step(a, x)
        finally: torch.cuda.set_sync_debug_mode(0)
        # and the profiler's view: no synchronising CUDA runtime call inside the step
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof: train.adapt_step(a, x)
        torch.cuda.synchronize()
        syncs = [e.name for e in prof.events() if e.name in ('cudaStreamSynchronize', 'cudaDeviceSynchronize', 'cudaMemcpy')]
        assert not syncs, (method, syncs)


if __name__ == '__main__': _worker(*sys.argv[1:])
