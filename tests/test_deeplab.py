"""Full-size DeepLabV2-ResNet-101 checks (the notebook 02a_deeplab uses narrow models).

One full R101 is built for the module; every family's file is written *by hand* from the layout
table in nbs/02a_deeplab.ipynb ("What each family's file holds") with the real key names and shapes,
saved with torch.save, loaded back with `load_pretrained`, and compared tensor by tensor and
against an independent functional forward written from the codebases' facts that chapter lists
(stride placement, dilations, ceil_mode, ASPP branches, BN eps, input normalisation).
"""
import warnings
import pytest
import torch
import torch.nn.functional as F

from sfda_nb.core import load_checkpoint, sha256_file
from sfda_nb.deeplab import (DeepLabV2, FAMILIES, CheckpointMismatch, LayoutError, deeplabv2_r101,
                             detect_family, load_pretrained)

C = 19  # classes of the fixtures


@pytest.fixture(scope='module', autouse=True)
def _threads():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    with torch.no_grad(): yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def ref():
    "The one full-size build: Caffe-style, both heads, random BN statistics and head biases."
    torch.manual_seed(0)
    m = DeepLabV2(C, multi_level=True)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, t in m.state_dict().items():
            if k.endswith(('running_mean', 'bias')) and t.is_floating_point(): t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif k.endswith('running_var'): t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif k.endswith('weight') and t.ndim == 1:  # small final-BN scales keep 33 residual blocks bounded
                t.copy_((0.1 if '.bn3.' in k else 1) * (1 + 0.1 * torch.randn(t.shape, generator=g)))
        m.bn1.running_var[:8] = 1e-4  # small variances make BN's eps (1e-5, or FrozenBN's 0) visible in the output
    return m.eval()


@pytest.fixture(scope='module')
def SD(ref): return ref.state_dict()


@pytest.fixture(scope='module')
def x():
    return torch.rand(1, 3, 65, 65, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------
# An independent forward, straight from the codebases' facts (not from sfda_nb.deeplab)

def _bn(x, sd, p, eps):
    v = lambda s: sd[f'{p}.{s}'].view(1, -1, 1, 1)
    return (x - v('running_mean')) / torch.sqrt(v('running_var') + eps) * v('weight') + v('bias')


def reference_forward(sd, x, style, norm, branches, eps):
    "(layer4 features, main logits, aux logits or None) of DeepLabV2-R101 in our key names."
    if norm == 'caffe_bgr':
        x = x[:, [2, 1, 0]] * 255 - torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
    else:
        x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = F.relu(_bn(F.conv2d(x, sd['conv1.weight'], stride=2, padding=3), sd, 'bn1', eps))
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=(style == 'caffe'))
    outs = {}
    for L, n in zip((1, 2, 3, 4), (3, 4, 23, 3)):
        for i in range(n):
            p, stride = f'layer{L}.{i}', (2 if L == 2 and i == 0 else 1)
            if style == 'caffe': dil = {3: 2, 4: 4}.get(L, 1)                      # every block (Caffe-style DeepLab)
            else: dil = {3: 1 if i == 0 else 2, 4: 2 if i == 0 else 4}.get(L, 1)  # torchvision's previous_dilation
            s1, s2 = (stride, 1) if style == 'caffe' else (1, stride)
            out = F.relu(_bn(F.conv2d(x, sd[f'{p}.conv1.weight'], stride=s1), sd, f'{p}.bn1', eps))
            out = F.relu(_bn(F.conv2d(out, sd[f'{p}.conv2.weight'], stride=s2, padding=dil, dilation=dil), sd, f'{p}.bn2', eps))
            out = _bn(F.conv2d(out, sd[f'{p}.conv3.weight']), sd, f'{p}.bn3', eps)
            res = _bn(F.conv2d(x, sd[f'{p}.downsample.0.weight'], stride=stride), sd, f'{p}.downsample.1', eps) if i == 0 else x
            x = F.relu(out + res)
        outs[L] = x
    def aspp(f, pre):
        return sum(F.conv2d(f, sd[f'{pre}.conv2d_list.{j}.weight'], sd[f'{pre}.conv2d_list.{j}.bias'], padding=r, dilation=r)
                   for j, r in enumerate((6, 12, 18, 24)[:branches]))
    aux = aspp(outs[3], 'aux_head') if 'aux_head.conv2d_list.0.weight' in sd else None
    return outs[4], aspp(outs[4], 'head'), aux


def close(a, b, rtol=1e-4):
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * b.abs().max().item())


# ---------------------------------------------------------------------------------------------
# Each family's file, written by hand from the layout table of nbs/02a_deeplab.ipynb

def _split(SD, counters=True):
    keep = lambda k: counters or not k.endswith('num_batches_tracked')
    bb = {k: v for k, v in SD.items() if not k.startswith(('head.', 'aux_head.')) and keep(k)}
    head = {k[len('head.'):]: v for k, v in SD.items() if k.startswith('head.')}
    aux = {k[len('aux_head.'):]: v for k, v in SD.items() if k.startswith('aux_head.')}
    return bb, head, aux


def _init_head21():  # the init files' layer5: 21 classes on layer4 (2048 channels)
    return {f'layer5.conv2d_list.{i}.{t}': torch.randn((21, 2048, 3, 3) if t == 'weight' else (21,)) for i in range(4) for t in ('weight', 'bias')}


def write_family(family, SD):
    bb, head, aux = _split(SD)
    bb_old, _, _ = _split(SD, counters=False)  # files saved before PyTorch 0.4.1 / with FrozenBatchNorm2d
    multi = {**bb, **{f'layer6.{k}': v for k, v in head.items()}, **{f'layer5.{k}': v for k, v in aux.items()}}
    if family == 'torchvision_imagenet':
        return {**bb_old, 'fc.weight': torch.randn(1000, 2048), 'fc.bias': torch.randn(1000)}
    if family == 'deeplab_init':
        return {f'Scale.{k}': v for k, v in {**bb_old, **_init_head21()}.items()}
    if family == 'coco_init':
        return {**bb_old, **_init_head21()}
    if family in ('adaptsegnet', 'advent'):
        return multi
    if family == 'hcl':
        proj = {'projector_1.linear1.weight': torch.randn(2048, 1024, 1, 1), 'projector_1.linear1.bias': torch.randn(2048),
                'projector_1.linear2.weight': torch.randn(128, 2048, 1, 1), 'projector_1.linear2.bias': torch.randn(128)}
        return {f'module.{k}': v for k, v in {**multi, **proj}.items()}
    if family == 'dacs':
        single = {**bb, **{f'layer5.{k}': v for k, v in head.items()}}
        return {'iteration': 250000, 'optimizer': {'state': {}, 'param_groups': [{'lr': 2.5e-4, 'params': [0]}]},
                'config': {'model': 'DeepLab', 'training': {'batch_size': 2}}, 'model': single, 'ema_model': single}
    if family in ('maxsquare', 'urma'):
        return {'epoch': 2, 'iteration': 100, 'best_MIou': 0.42, 'optimizer': {},
                'state_dict': {f'module.{k}': v for k, v in multi.items()}}
    if family in ('fada', 'dtst', 'fada_bn'):
        fe = bb if family == 'fada_bn' else bb_old
        return {'iteration': 20000, 'optimizer_fea': {}, 'optimizer_cls': {},
                'feature_extractor': {f'module.backbone.{k}': v for k, v in fe.items()},
                'classifier': {f'module.{k}': v for k, v in head.items()}}
    raise KeyError(family)


# family → (name passed to load_pretrained, its codebase's forward: style, norm, ASPP branches, BN eps, head loaded, aux head)
CASES = {
    'torchvision_imagenet': ('auto', 'torchvision', 'imagenet', 4, 0.0, False, False),
    'deeplab_init': ('auto', 'caffe', 'caffe_bgr', 4, 1e-5, False, False),
    'coco_init': ('coco_init', 'caffe', 'caffe_bgr', 2, 1e-5, False, False),
    'adaptsegnet': ('adaptsegnet', 'caffe', 'caffe_bgr', 2, 1e-5, True, True),
    'advent': ('advent', 'caffe', 'caffe_bgr', 4, 1e-5, True, True),
    'hcl': ('auto', 'caffe', 'caffe_bgr', 4, 1e-5, True, True),
    'dacs': ('auto', 'caffe', 'caffe_bgr', 2, 1e-5, True, False),
    'maxsquare': ('auto', 'caffe', 'caffe_bgr', 2, 1e-5, True, True),
    'urma': ('urma', 'caffe', 'caffe_bgr', 2, 1e-5, True, True),
    'fada': ('auto', 'torchvision', 'imagenet', 4, 0.0, True, False),   # FrozenBatchNorm2d: no eps
    'dtst': ('dtst', 'torchvision', 'imagenet', 4, 0.0, True, False),
    'fada_bn': ('auto', 'torchvision', 'imagenet', 4, 1e-5, True, False),  # FREEZE_BN=False: plain BN
}


def test_real_names_and_shapes(ref, SD):
    "The fixtures carry ResNet-101's real key names and shapes."
    bb = [k for k in SD if not k.startswith(('head.', 'aux_head.'))]
    assert len(bb) == 104 + 104 * 5  # 104 convs, 104 BNs (weight, bias, running_mean/var, num_batches_tracked)
    assert sum(p.numel() for n, p in ref.named_parameters() if not n.startswith(('head.', 'aux_head.'))) == 42_500_160  # torchvision R101 minus fc
    shapes = {'conv1.weight': (64, 3, 7, 7), 'layer1.0.downsample.0.weight': (256, 64, 1, 1), 'layer2.0.conv1.weight': (128, 256, 1, 1),
              'layer3.22.bn3.running_var': (1024,), 'layer4.2.conv3.weight': (2048, 512, 1, 1),
              'head.conv2d_list.3.weight': (C, 2048, 3, 3), 'aux_head.conv2d_list.0.weight': (C, 1024, 3, 3)}
    assert {k: tuple(SD[k].shape) for k in shapes} == shapes
    assert [len({k.split('.')[1] for k in bb if k.startswith(f'layer{i}.')}) for i in range(1, 5)] == [3, 4, 23, 3]
    assert [k.split('.')[1] for k in bb if 'downsample.0' in k] == ['0'] * 4  # block 0 of every layer
    assert ref.feat_dim == 2048


def test_forward_matches_reference(ref, SD, x):
    "The model's Caffe forward (4 and 2 ASPP branches) equals the independent one."
    out, aux = ref.forward_aux(x)
    f, logits, aux_ref = reference_forward(SD, x, 'caffe', 'caffe_bgr', 4, 1e-5)
    assert out.feats.shape == (1, 2048, 9, 9) and out.logits.shape == (1, C, 9, 9) and aux.shape == (1, C, 9, 9)
    close(out.feats, f); close(out.logits, logits); close(aux, aux_ref)
    ref.head.branches = 2
    try:
        two = ref(x).logits
        close(two, reference_forward(SD, x, 'caffe', 'caffe_bgr', 2, 1e-5)[1])
        c = ref.head.conv2d_list
        assert torch.equal(two, c[0](out.feats) + c[1](out.feats))  # exactly branch 0 + branch 1
    finally:
        ref.head.branches = 4


@pytest.mark.parametrize('family', list(CASES))
def test_round_trip(family, SD, x, tmp_path):
    name, style, norm, branches, eps, has_head, has_aux = CASES[family]
    path = tmp_path / f'{family}.pth'
    torch.save(write_family(family, SD), path)
    try:
        if name == 'auto':
            assert detect_family(load_checkpoint(path)) == family.replace('_bn', '')
        m = load_pretrained(None, path, family=name, num_classes=C).eval()
        info = m.source_info
        assert info['family'] == (family.replace('_bn', '') if name == 'auto' else name)
        assert info['sha256'] == sha256_file(path) and info['missing'] == [] and info['unexpected'] == []
        assert (m.style, m.norm, m.aspp_branches, m.multi_level) == (style, norm, branches, has_aux)
        assert m.maxpool.ceil_mode == (style == 'caffe')
        assert [b.conv1.stride[0] for b in m.layer2][0] == (2 if style == 'caffe' else 1)
        ms = m.state_dict()
        for k, v in SD.items():
            if k.endswith('num_batches_tracked'): continue
            if k.startswith('aux_head.') and not has_aux: continue
            if k.startswith(('head.', 'aux_head.')) and not has_head: continue
            assert torch.equal(ms[k], v), k
        f, logits, aux = reference_forward({k: v for k, v in SD.items() if has_aux or not k.startswith('aux_head.')},
                                           x, style, norm, branches, eps)
        out, got_aux = m.forward_aux(x)
        close(out.feats, f)
        if has_head: close(out.logits, logits)
        if has_aux: close(got_aux, aux)
    finally:
        path.unlink()


def test_stride8_grid_512(ref, SD):
    "512×512 gives 65×65 in Caffe style (maxpool ceil_mode) and 64×64 in torchvision style."
    x = torch.rand(1, 3, 512, 512)
    assert ref(x).logits.shape[-2:] == (65, 65)
    tv = DeepLabV2(C, style='torchvision', multi_level=True).eval()
    tv.load_state_dict(SD)
    assert tv(x).logits.shape[-2:] == (64, 64)


def test_cross_load_trap(ref, SD, x):
    "Same weights, torchvision vs Caffe stride placement: same 9×9 grid at 65×65, different features."
    tv = DeepLabV2(C, style='torchvision', multi_level=True).eval()
    tv.load_state_dict(SD)  # keys and shapes are identical, so this "works"
    a, b = ref(x), tv(x)
    assert a.feats.shape == b.feats.shape
    assert ((a.feats - b.feats).norm() / a.feats.norm()) > 0.02   # random weights give ~0.07
    assert (a.logits.argmax(1) != b.logits.argmax(1)).any()        # and different predictions


def test_bad_inputs(SD, tmp_path):
    p = tmp_path / 'ms.pth'
    torch.save(write_family('maxsquare', SD), p)
    with pytest.raises(CheckpointMismatch, match=r"'module.layer6.conv2d_list.0.weight' has shape \(19, 2048, 3, 3\) in the file "
                                                  r"but \(16, 2048, 3, 3\) in the model .*the checkpoint has 19 classes, the model 16"):
        load_pretrained(None, p, num_classes=16)
    ck = write_family('dacs', SD)
    ck['model'] = {k: v for k, v in ck['model'].items() if not k.startswith('layer4.2.')}
    torch.save(ck, p)
    with pytest.raises(CheckpointMismatch, match=r"does not fit the model: 15 missing keys \['layer4.2.conv1.weight'.*refusing a partial load"):
        load_pretrained(None, p)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        m = load_pretrained(deeplabv2_r101(C, 'dacs'), p, strict=False)
    assert len(m.source_info['missing']) == 3 + 3 * 4  # layer4.2: 3 convs, 3 BNs × (weight, bias, running mean, var)
    torch.save({'net': {'w': torch.zeros(1)}}, p)
    with pytest.raises(LayoutError, match="unknown checkpoint layout .* known families: torchvision_imagenet, deeplab_init"):
        load_pretrained(None, p)
    torch.save(write_family('adaptsegnet', SD), p)
    with pytest.raises(LayoutError, match="pass family='adaptsegnet' or family='advent'"):
        load_pretrained(None, p)
    torch.save({'meta': {}, 'state_dict': {'model.decode_head.aspp_modules.0.conv.weight': torch.zeros(1)}}, p)
    with pytest.raises(NotImplementedError, match='ResNetV1c'):
        load_pretrained(None, p)
    assert set(CASES) - {'fada_bn'} == set(FAMILIES)  # every supported family has a round-trip case
