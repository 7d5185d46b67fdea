"""Model tests that spawn processes or are too slow for the notebook (02_models)."""
import json, re, subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, VENV_BIN
from sfda_nb import models, evaluation, mean_teacher, source_models
from sfda_nb.core import IGNORE, SegOutput


def write_tiny(root: Path, n=12, h=32, w=64, seed=0):
    "Tiny synth_gta5 and synth_cityscapes in the real layouts: three horizontal bands (sky, building, road)."
    rng = np.random.default_rng(seed)
    ids, colours = np.array([23, 11, 7]), np.array([[70, 130, 180], [70, 70, 70], [128, 64, 128]])
    def sample():
        cuts = np.sort(rng.integers(4, h - 4, 2))
        band = (np.arange(h)[:, None] >= cuts).sum(1)[:, None].repeat(w, 1)
        return np.clip(colours[band] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8), ids[band].astype(np.uint8)
    for i in range(n):
        img, lab = sample()
        for sub in ('images', 'labels'): (root/'synth_gta5'/sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root/'synth_gta5'/'images'/f'{i:05d}.png')
        Image.fromarray(lab, mode='L').save(root/'synth_gta5'/'labels'/f'{i:05d}.png')
        img, lab = sample()
        split = 'val' if i % 2 else 'train'
        for kind, arr, suffix in (('leftImg8bit', img, 'leftImg8bit'), ('gtFine', lab, 'gtFine_labelIds')):
            p = root/'synth_cityscapes'/kind/split/'aachen'/f'aachen_000000_{i:06d}_{suffix}.png'
            p.parent.mkdir(parents=True, exist_ok=True); Image.fromarray(arr).save(p)
    return root


def test_source_checkpoint_trains_once_under_concurrency(tmp_path, one_thread):
    "Two processes asking for the same cached source model: one trains, the other waits and reuses the file."
    write_tiny(tmp_path)
    script = textwrap.dedent(f"""
        import json, sys
        from sfda_nb import source_models
        p = source_models.source_checkpoint('synth_gta5', iters=20, batch_size=2, crop=[32, 32],
                                     arch_kwargs={{'width': 4, 'feat_dim': 8}}, data_root={str(tmp_path)!r},
                                     device='cpu', cache_dir={str(tmp_path/'cache')!r}, verbose=True, log_every=5)
        print('PATH', p)
    """)
    procs = [subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs): assert p.returncode == 0, e[-3000:]
    paths = {l.split(' ', 1)[1] for o, _ in outs for l in o.splitlines() if l.startswith('PATH ')}
    assert len(paths) == 1
    trained = [o.count('iter 20/20') for o, _ in outs]
    assert sorted(trained) == [0, 1], trained  # exactly one process trained
    trainer = next(o for o, _ in outs if 'iter 20/20' in o)  # its progress lines come under a heading that says what trains
    head = trainer.splitlines()[0]
    assert head.startswith('training the source model once (small on synth_gta5') and 'cached as' in head, head
    ckpts = list((tmp_path/'cache').glob('*.pt'))
    assert [c.name for c in ckpts] == [Path(paths.pop()).name]


def test_train_source_cli(tmp_path, one_thread):
    "tools/train_source.py prints both mIoUs and the gap from the checkpoint's metadata."
    write_tiny(tmp_path)
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'train_source.py'), 'iters=10', 'batch_size=2', 'crop=[32,32]',
                        'arch_kwargs={"width":4,"feat_dim":8}', f'data_root={tmp_path}', 'device=cpu',
                        f'out={tmp_path/"m.pt"}'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'synth_gta5/val: mIoU' in r.stdout and 'synth_cityscapes/val: mIoU' in r.stdout and 'domain gap' in r.stdout
    _, meta = models.load_model(tmp_path/'m.pt')
    assert f"{meta['evals']['synth_gta5/val']['miou']:.1f}" in r.stdout


def test_ema_teacher_on_frozen_bn_deeplab():
    "The teacher follows a DeepLabV2 whose BN is FADA's frozen kind (affine terms are buffers)."
    from sfda_nb.deeplab import deeplabv2_r101
    torch.manual_seed(0)
    s = deeplabv2_r101(19, 'fada', width=4)
    t = mean_teacher.EMATeacher(s, alpha=0.9)
    with torch.no_grad():
        for p in s.parameters(): p.add_(1.0)
    t.update(s)
    for (n, a), b in zip(t.model.state_dict().items(), s.state_dict().values()): assert torch.equal(a, b), n
    x = torch.rand(1, 3, 48, 48)
    before = {n: b.clone() for n, b in t.model.named_buffers()}
    t(x)
    assert all(torch.equal(b, before[n]) for n, b in t.model.named_buffers())


def test_evaluate_full_resolution_cityscapes_size():
    "Labels at 1024×2048 with a model fed 512×1024 images: the matrix counts every non-ignored full-resolution pixel."
    class Const(torch.nn.Module):
        num_classes, feat_dim, norm = 19, 1, 'imagenet'
        def forward(self, x):
            n, _, h, w = x.shape
            logits = torch.zeros(n, 19, h // 8, w // 8); logits[:, 13] = 1  # always 'car'
            return SegOutput(logits[:, :1], logits)
    label = torch.full((1, 1024, 2048), 13, dtype=torch.long); label[:, :100] = IGNORE; label[:, -10:] = 0
    batch = {'img': torch.zeros(1, 3, 512, 1024, dtype=torch.uint8), 'label': label}
    res = evaluation.evaluate(Const(), [batch], 'cs19')
    assert res.conf.sum().item() == (1024 - 100) * 2048
    assert res.conf[0, 13].item() == 10 * 2048
    assert abs(res.iou[13].item() - (1024 - 110) / (1024 - 100)) < 1e-9
    assert np.isnan(res.iou[1].item())


def test_deeplab_source_training_from_imagenet_layout(tmp_path):
    "deeplabv2_r101 source training starts from a torchvision-layout ImageNet file, with that family's forward."
    from sfda_nb.deeplab import deeplabv2_r101
    from sfda_nb.core import save_checkpoint, frozen_config
    write_tiny(tmp_path)
    net = deeplabv2_r101(19, 'torchvision_imagenet', width=4)
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith('head.')}
    sd.update({'fc.weight': torch.zeros(1000, 128), 'fc.bias': torch.zeros(1000)})
    init = save_checkpoint(sd, tmp_path/'resnet101-narrow.pth')
    cfg = frozen_config(source_models.SourceConfig, dict(arch='deeplabv2_r101', pretrained=str(init), iters=2, batch_size=2,
                                                  crop=[32, 32], data_root=str(tmp_path), device='cpu',
                                                  out=str(tmp_path/'dl.pt'), eval_max_images=1))
    model, meta = models.load_model(source_models.train_source(cfg, verbose=False))
    assert (meta['recipe']['optimizer'], meta['pretrained']['family']) == ('sgd', 'torchvision_imagenet')
    assert (model.style, model.norm, model.width) == ('torchvision', 'imagenet', 4)
    with pytest.raises(Exception, match="is not a backbone file"):   # a SmallSegNet takes only a pretrain_backbone file
        source_models.train_source(frozen_config(source_models.SourceConfig, dict(pretrained=str(init), out=str(tmp_path/'s.pt'),
                                                                    data_root=str(tmp_path), device='cpu')))


def test_source_training_size_mismatch(tmp_path, one_thread):
    "A source pair whose label has another size stops training before it starts, or is skipped/resized and recorded."
    from sfda_nb.core import frozen_config
    from sfda_nb.data import SizeMismatchWarning
    write_tiny(tmp_path)
    bad = tmp_path/'synth_gta5'/'labels'/'00003.png'
    Image.fromarray(np.full((16, 64), 7, np.uint8), mode='L').save(bad)  # 64×16 label for a 64×32 image
    bad_val = tmp_path/'synth_gta5'/'labels'/'00010.png'                  # every 10th pair is held out as source val
    Image.fromarray(np.full((30, 64), 7, np.uint8), mode='L').save(bad_val)
    base = dict(iters=2, batch_size=2, crop=[32, 32], arch_kwargs={'width': 4, 'feat_dim': 8}, data_root=str(tmp_path),
                device='cpu', eval_max_images=1, log_every=1)
    with pytest.raises(ValueError, match=f"(?s)label {re.escape(str(bad))} is 64×16.*size_mismatch='skip'"):
        source_models.train_source(frozen_config(source_models.SourceConfig, base | dict(out=str(tmp_path/'e.pt'))), verbose=False)
    assert not (tmp_path/'e.pt').exists()
    metas = {}
    for policy, n in (('skip', 9), ('resize', 10)):  # 12 pairs, every 10th held out as val: 10 train (one mismatched)
        with pytest.warns(SizeMismatchWarning):
            path = source_models.train_source(frozen_config(source_models.SourceConfig, base | dict(size_mismatch=policy, out=str(tmp_path/f'{policy}.pt'))), verbose=False)
        metas[policy] = models.load_model(path)[1]
        assert metas[policy]['n_train'] == n
        assert 'synth_gta5/val' in metas[policy]['evals']  # scored under the same policy after training
        assert metas[policy]['size_mismatch'] == {'policy': policy, 'pairs': [[str(tmp_path/'synth_gta5'/'images'/'00003.png'), str(bad)]]}


# The committed pretraining-world backbone (the miniature's ImageNet weights): file -> sha256, as recorded in
# results/calibration/README.md with the command and seed that regenerate it.
BACKBONE_SHA256 = {'small_backbone.pt': 'd9e3257cdc5640bab81c0134f0aee0ff76bde348805fc304cc07f2af872ac84e'}


def test_committed_backbone_hash_and_command(tmp_path, one_thread):
    "The committed backbone is the recorded one, loads into the default SmallSegNet, and its command still runs (3 steps)."
    path = models.EMBEDDED_BACKBONE
    assert path.stat().st_size <= 5 * 2**20, f"{path} is over 5 MB"
    from sfda_nb.core import sha256_file
    assert sha256_file(path) == BACKBONE_SHA256[path.name], "the committed backbone changed: record its new sha256 and command"
    info = models.load_backbone(models.build_model('small', 19), path)
    assert info['config']['seed'] == 0 and info['render_version'] >= 3
    assert models.resolve_pretrained(source_models.SourceConfig()) == path   # the default source model starts from it
    out = tmp_path/'bb.pt'
    r = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'pretrain.py'), str(out), 'iters=3', 'batch_size=2',
                        'size=[32,64]', 'threads=1', 'seed=0'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'sha256' in r.stdout and out.exists()
