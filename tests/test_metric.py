"""Metric learning (03_metric) and mixing (04_classmix) on every available device, at the real sizes.

The notebooks test the behaviour on small CPU tensors; here the same pieces run on the model's
device (CUDA when present), with the generator on the CPU or on that device, and a CPU run and a
device run of the same seeded draw must agree.
"""
import math, time
import pytest
import torch

from sfda_nb.core import IGNORE
from sfda_nb.metric import MetricLearner, sample_balanced, metric_reliability, downsample_labels, auroc
from sfda_nb.classmix import MIXERS, classmix_mask, mocm_mask, mix, partner, strong_augment

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def _batch(seed, N=2, K=64, h=17, w=17, C=6, H=129, W=129):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(N, K, h, w, generator=g).relu()
    pseudo = torch.randint(0, C, (N, H, W), generator=g)
    pseudo[:, :5] = IGNORE
    x = torch.rand(N, 3, H, W, generator=g)
    return feats, pseudo, x


@pytest.mark.parametrize('dev', DEVICES)
def test_metric_learner_device_matches_cpu(dev):
    "Same seeds on CPU and on `dev`: the same pixels are sampled and the losses and reliabilities agree."
    feats, pseudo, _ = _batch(0)
    out = {}
    for d in ('cpu', dev):
        torch.manual_seed(0)
        ml = MetricLearner(64, 6, n_per_class=128).to(d)
        g = torch.Generator().manual_seed(1)  # the draws stay on the CPU generator, the indices move
        losses = [ml.update(feats.to(d), pseudo.to(d), g) for _ in range(3)]
        r = ml.reliability(feats.to(d), pseudo.to(d))
        assert r.device.type == torch.device(d).type and r.shape == pseudo.shape
        assert bool((r >= 0).all() and (r <= 1).all()) and bool((r[pseudo.to(d) == IGNORE] == 0).all())
        out[d] = (losses, r.cpu())
    assert all(math.isclose(a, b, rel_tol=1e-3) for a, b in zip(out['cpu'][0], out[dev][0]))
    assert torch.allclose(out['cpu'][1], out[dev][1], atol=1e-4)


@pytest.mark.parametrize('dev', DEVICES)
def test_mixers_and_strong_augment_on_device(dev):
    "Masks, mixing and strong augmentation stay on `dev` and equal the CPU result for the same CPU generator."
    _, pseudo, x = _batch(1, N=4)
    rel = torch.rand(pseudo.shape, generator=torch.Generator().manual_seed(2)) * (pseudo != IGNORE)
    for name, kw in [('none', {}), ('classmix', {}), ('mocm', dict(mode='sample')), ('mocm', dict(mode='top', gate=0.3))]:
        res = {}
        for d in ('cpu', dev):
            xm, ym, rm, m = MIXERS[name](**kw)(x.to(d), pseudo.to(d), rel.to(d), torch.Generator().manual_seed(3))
            xs = strong_augment(xm, torch.Generator().manual_seed(4), p_jitter=1., p_blur=1.)
            assert {t.device.type for t in (xm, ym, rm, m, xs)} == {torch.device(d).type}
            res[d] = [t.cpu() for t in (ym, rm, m, xs)]
        for a, b in zip(res['cpu'][:3], res[dev][:3]): assert torch.equal(a, b)
        assert torch.allclose(res['cpu'][3], res[dev][3], atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_generator_on_cuda():
    "A CUDA generator also works: draws happen on the device, results are valid and reproducible."
    feats, pseudo, x = [t.cuda() for t in _batch(5)]
    g = lambda: torch.Generator(device='cuda').manual_seed(0)
    idx = sample_balanced(pseudo.flatten(), 100, g(), 6)
    assert idx.is_cuda and torch.equal(idx, sample_balanced(pseudo.flatten(), 100, g(), 6))
    assert torch.equal(torch.bincount(pseudo.flatten()[idx], minlength=6).cpu(), torch.full((6,), 100))
    m = classmix_mask(pseudo, g()); assert m.is_cuda and torch.equal(m, classmix_mask(pseudo, g()))
    r = torch.rand(pseudo.shape, device='cuda')
    assert torch.equal(mocm_mask(pseudo, r, g()), mocm_mask(pseudo, r, g()))
    assert strong_augment(x, g(), p_jitter=1., p_blur=1.).is_cuda
    ml = MetricLearner(64, 6, n_per_class=64).cuda()
    assert math.isfinite(ml.update(feats, pseudo, g()))


def test_real_size_step_is_fast_enough():
    "One metric update and one reliability map at DeepLabV2 size (2×2048×65×65 features, 19 classes, 512×512 labels)."
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 2048, 65, 65, generator=g).relu()
    pseudo = torch.randint(0, 19, (2, 512, 512), generator=g)
    torch.manual_seed(0)
    ml = MetricLearner(2048, 19)
    t0 = time.perf_counter()
    loss = ml.update(feats, pseudo, g)
    r = ml.reliability(feats, pseudo)
    dt = time.perf_counter() - t0
    assert math.isfinite(loss) and r.shape == (2, 512, 512) and bool((r >= 0).all() and (r <= 1).all())
    assert dt < 60, f'one metric update + reliability took {dt:.1f}s on the CPU'
    m = MIXERS['mocm']()(torch.rand(2, 3, 512, 512), pseudo, r, g)[3]
    assert 0.2 < m.float().mean().item() < 0.8  # about half of 19 uniformly spread classes
