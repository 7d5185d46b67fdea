"""sfda_nb.data on hand-made files in each real encoding: exact decoding, bad input, workers, resumable order."""
import re, shutil, warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cityscapesscripts.helpers import labels as cs_labels
from PIL import Image

from sfda_nb import synth
from sfda_nb.core import ConfigError
from sfda_nb.data import (DATASETS, PROTOCOLS, BatchStream, CityscapesDataset, DatasetSpec, GTA5Dataset, ItemKey,
                          NTHUDataset, SegDataset, SizeMismatchWarning, SynthiaDataset, UnknownLabelWarning, city_of,
                          dataset_spec, default_protocol, eval_loader, eval_split, get_dataset, is_rendered, real_name,
                          register_dataset)

H, W = 4, 6
ID_PALETTE = np.zeros((256, 3), np.uint8)
for l in cs_labels.labels:
    if l.id >= 0: ID_PALETTE[l.id] = l.color

# one label map per encoding, with the protocol labels each must decode to (written by hand from the official tables)
CS_IDS = np.array([[7, 8, 11, 12, 13, 17], [19, 20, 21, 22, 23, 24], [25, 26, 27, 28, 31, 32], [33, 0, 9, 18, 50, 255]])
CS19 = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17], [18, 255, 255, 255, 255, 255]]
CS_S16 = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 255, 9, 10], [11, 12, 255, 13, 255, 14], [15, 255, 255, 255, 255, 255]]
CS_N13 = [[0, 1, 2, 255, 255, 255], [3, 4, 5, 255, 6, 7], [8, 9, 255, 10, 255, 11], [12, 255, 255, 255, 255, 255]]
SY_IDS = np.array([[3, 4, 2, 21, 5, 7], [15, 9, 6, 16, 1, 10], [17, 8, 18, 19, 20, 12], [11, 0, 13, 22, 23, 4000]])
SY_S16 = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 255, 9, 10], [11, 12, 255, 13, 255, 14], [15, 255, 255, 255, 255, 255]]
SY_S13 = [[0, 1, 2, 255, 255, 255], [3, 4, 5, 255, 6, 7], [8, 9, 255, 10, 255, 11], [12, 255, 255, 255, 255, 255]]


def rgb(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(img).save(path, quality=95)
    return img


def ids_png(path, ids, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(ids, np.uint8), mode='L')
    if palette: im = im.convert('P'); im.putpalette(ID_PALETTE.flatten().tolist())
    im.save(path)


def synthia_png(path, cls):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros(cls.shape + (3,), np.uint16)
    a[..., 2], a[..., 1], a[..., 0] = cls, 976, 7  # cv2 writes BGR: class = first PNG channel, instances second
    assert cv2.imwrite(str(path), a)


def build(root: Path, prefix=''):
    "Real-layout fixtures for all four formats under `root` (folder names prefixed for the synth_* twins)."
    for i in range(12):
        rgb(root/f'{prefix}gta5'/'images'/f'{i+1:05d}.png', i)
        ids_png(root/f'{prefix}gta5'/'labels'/f'{i+1:05d}.png', CS_IDS if i == 0 else np.full((H, W), 26), palette=True)
        rgb(root/f'{prefix}synthia'/'RGB'/f'{i:07d}.png', 100 + i)
        synthia_png(root/f'{prefix}synthia'/'GT'/'LABELS'/f'{i:07d}.png', SY_IDS if i == 0 else np.full((H, W), 8))
    for split, city in [('train', 'bremen'), ('val', 'lindau')]:
        for k in range(2):
            stem = f'{city}_{k:06d}_000019'
            rgb(root/f'{prefix}cityscapes'/'leftImg8bit'/split/city/f'{stem}_leftImg8bit.png', k)
            ids_png(root/f'{prefix}cityscapes'/'gtFine'/split/city/f'{stem}_gtFine_labelIds.png', CS_IDS)
    for city in ('Rome', 'Taipei'):
        c = root/f'{prefix}nthu'/city
        for k in range(3): rgb(c/'Images'/'Train'/f'pano_{k:05d}_0_180.jpg', k)
        rgb(c/'Images'/'Test'/'pano_00009_2_0.png', 9)
        ids_png(c/'Labels'/'Test'/'pano_00009_2_0_eval.png', CS_IDS)
    return root


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = build(tmp_path_factory.mktemp('data'))
    build(r, 'synth_')
    return r


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UnknownLabelWarning)
        yield


def label_of(root, name, split, protocol, i=0):
    return get_dataset(name, split, root=root, protocol=protocol, mode='eval')[i]['label'].tolist()


@pytest.mark.parametrize('prefix', ['', 'synth_'])
def test_exact_decoding(root, quiet, prefix):
    assert label_of(root, f'{prefix}gta5', 'val', 'cs19') == CS19
    assert label_of(root, f'{prefix}gta5', 'val', 'synthia16') == CS_S16
    assert label_of(root, f'{prefix}cityscapes', 'val', 'cs19') == CS19
    assert label_of(root, f'{prefix}cityscapes', 'train', 'nthu13') == CS_N13
    assert label_of(root, f'{prefix}synthia', 'val', 'synthia16') == SY_S16
    assert label_of(root, f'{prefix}synthia', 'val', 'synthia13') == SY_S13
    assert label_of(root, f'{prefix}nthu_rome', 'test', 'nthu13') == CS_N13
    assert label_of(root, f'{prefix}nthu_taipei', 'test', 'nthu13') == CS_N13


def test_synthia13_is_a_sub_score_of_synthia16():
    s16, s13 = PROTOCOLS['synthia16'], PROTOCOLS['synthia13']
    sub = s16.sub['synthia13']
    assert sub == (0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    # a 16-class label restricted to the sub-indices equals the 13-class label of the same pixels
    lut = np.full(256, 255); lut[list(sub)] = np.arange(13)
    assert lut[np.array(SY_S16)].tolist() == SY_S13
    assert PROTOCOLS['nthu13'].train_ids == s13.train_ids


def test_images_are_rgb_and_exact(root):
    ds = get_dataset('synth_gta5', 'all', root=root, mode='eval')
    for i in (1, 5):
        want = np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)
        assert np.array_equal(ds[i]['img'].permute(1, 2, 0).numpy(), want)


def test_splits(root):
    g = lambda s: get_dataset('gta5', s, root=root).names
    assert g('val') == ['00001', '00011'] and len(g('train')) == 10 and len(g('all')) == 12
    assert sorted(g('val') + g('train')) == g('all')
    s = lambda sp: get_dataset('synthia', sp, root=root).names
    assert s('val') == ['0000000', '0000010']
    assert get_dataset('cityscapes', 'train', root=root).names == ['bremen_000000_000019', 'bremen_000001_000019']
    tr = get_dataset('nthu_rome', 'train', root=root, protocol='nthu13', mode='eval')
    assert len(tr) == 3 and not tr.has_labels
    it = tr[0]
    assert it['has_label'] is False and (it['label'] == 255).all() and it['label'].shape == (H, W)
    assert it['img'].shape == (3, 512, 1024)


def test_standard_sizes(root, quiet):
    for name, (w, h) in [('gta5', (1280, 720)), ('synthia', (1280, 760)), ('cityscapes', (1024, 512)), ('nthu_rome', (1024, 512))]:
        split = eval_split(name)
        ev = get_dataset(name, split, root=root, mode='eval', protocol=dataset_spec(name).protocol)[0]
        assert ev['img'].shape == (3, h, w) and ev['label'].shape == (H, W)  # label at full resolution
        tr = get_dataset(name, split, root=root, mode='train', scale=None, flip=False)[0]
        assert tr['img'].shape == (3, h, w) and tr['label'].shape == (h, w)
    syn = get_dataset('synth_cityscapes', 'val', root=root, mode='train', scale=(0.5, 1.5))[0]
    assert syn['img'].shape == (3, H, W) and syn['label'].shape == (H, W)


def test_unknown_values_are_counted_and_warned_once(root):
    ds = get_dataset('gta5', 'all', root=root, mode='eval')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        for i in range(len(ds)): ds[i]
        ds[0]
    assert ds.unknown_label_pixels == 2  # the 50 in the first image, read twice (255 is ignore, not unknown)
    msgs = [str(x.message) for x in w if x.category is UnknownLabelWarning]
    assert len(msgs) == 1 and 'labels/00001.png' in msgs[0] and '[50]' in msgs[0]
    sy = get_dataset('synthia', 'all', root=root, mode='eval', protocol='synthia16')
    with pytest.warns(UnknownLabelWarning, match=r'\[23, 4000\].*SYNTHIA class ids'): sy[0]
    assert sy.unknown_label_pixels == 2


def test_unknown_count_survives_worker_processes(root, one_thread, quiet):
    ds = get_dataset('cityscapes', 'val', root=root, mode='eval')
    assert len(list(eval_loader(ds, num_workers=2))) == 2
    assert ds.unknown_label_pixels == 2  # one 50 per image, counted inside the workers


def test_batch_stream_resumes_exactly_with_workers(root, one_thread, quiet):
    ds = get_dataset('synth_gta5', 'all', root=root, crop=(3, 4))
    a = BatchStream(ds, batch_size=5, seed=11)
    first = [next(a) for _ in range(6)]  # 30 samples: crosses two epoch boundaries of 12
    assert a.iteration == 6
    b = BatchStream(ds, batch_size=5, seed=11, start_iter=3, num_workers=2)
    for t in range(3, 6):
        x = next(b)
        assert x['name'] == first[t]['name']
        assert torch.equal(x['img'], first[t]['img']) and torch.equal(x['label'], first[t]['label'])
    b.close()
    keys = [k for t in range(6) for k in a.keys(t)]
    for e in (0, 1):
        assert sorted(k.index for k in keys[12 * e:12 * (e + 1)]) == list(range(12))
        assert all(k.epoch == e for k in keys[12 * e:12 * (e + 1)])
    assert [k.index for k in keys[:12]] == torch.randperm(12, generator=torch.Generator().manual_seed(11 * 1000003)).tolist()


def test_augmentation_depends_only_on_the_key(root, quiet):
    ds = get_dataset('synth_cityscapes', 'val', root=root, crop=(2, 3))
    a, b = ds[ItemKey(1, 4, 7)], ds[ItemKey(1, 4, 7)]
    assert torch.equal(a['img'], b['img']) and torch.equal(a['label'], b['label'])
    outs = {tuple(ds[ItemKey(1, e, 7)]['img'].flatten().tolist()) for e in range(12)}
    assert len(outs) > 3


@pytest.mark.parametrize('name, expect', [
    ('gta5', ['images/NNNNN.png', 'download.visinf.tu-darmstadt.de/data/from_games']),
    ('synthia', ['GT/LABELS/NNNNNNN.png', 'synthia-dataset.net', 'SYNTHIA-RAND-CITYSCAPES']),
    ('cityscapes', ['leftImg8bit/{split}/{city}', 'cityscapes-dataset.com', 'leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip']),
    ('nthu_tokyo', ['{City}/Labels/Test/{id}_eval.png', 'Cross City Adaptation']),
    ('synth_gta5', ['images/NNNNN.png', 'render it with `./run.sh render`']),
    ('synth_synthia', ['GT/LABELS', 'render it with `./run.sh render`']),
    ('synth_cityscapes', ['gtFine_labelIds.png', 'render it with `./run.sh render`']),
    ('synth_nthu_rio', ['Images/Train/*.jpg', 'render it with `./run.sh render`']),
])
def test_missing_root_names_layout_and_source(tmp_path, name, expect):
    with pytest.raises(FileNotFoundError) as e: get_dataset(name, eval_split(name), root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path/DATASETS[name].subdir) in msg
    for s in expect: assert s in msg, (s, msg)


def test_missing_city_of_present_nthu(root):
    with pytest.raises(FileNotFoundError, match="no images for split 'test'"):
        get_dataset('nthu_tokyo', 'test', root=root, protocol='nthu13')


@pytest.fixture
def broken(root, tmp_path):
    "A private copy of the fixtures to break."
    shutil.copytree(root, tmp_path/'d')
    return tmp_path/'d'


@pytest.mark.parametrize('name, split, label', [
    ('gta5', 'all', 'gta5/labels/00004.png'),
    ('synthia', 'all', 'synthia/GT/LABELS/0000003.png'),
    ('cityscapes', 'val', 'cityscapes/gtFine/val/lindau/lindau_000001_000019_gtFine_labelIds.png'),
    ('nthu_rome', 'test', 'nthu/Rome/Labels/Test/pano_00009_2_0_eval.png'),
])
def test_image_without_label_names_both(broken, name, split, label):
    (broken/label).unlink()
    with pytest.raises(FileNotFoundError, match=r'has no label; expected .*' + label.replace('.', r'\.')):
        get_dataset(name, split, root=broken, protocol=dataset_spec(name).protocol)


@pytest.mark.parametrize('rel', ['gta5/images/00003.png', 'gta5/labels/00003.png', 'synthia/RGB/0000002.png',
                                 'synthia/GT/LABELS/0000002.png', 'nthu/Rome/Images/Train/pano_00002_0_180.jpg'])
def test_corrupt_file_is_named(broken, rel):
    p = broken/rel
    p.write_bytes(p.read_bytes()[:60])  # truncated
    name = {'gta5': 'gta5', 'synthia': 'synthia', 'nthu': 'nthu_rome'}[rel.split('/')[0]]
    split = 'train' if 'nthu' in rel else 'all'
    ds = get_dataset(name, split, root=broken, mode='eval', protocol=dataset_spec(name).protocol)
    with pytest.raises(OSError, match='cannot read .*' + rel.replace('.', r'\.')): ds[2]  # the third file of each


def test_colour_label_is_refused(broken):
    p = broken/'gta5'/'labels'/'00002.png'
    Image.fromarray(ID_PALETTE[CS_IDS]).save(p)  # the colours, not the ids
    with pytest.raises(ValueError, match=f'label {p} is a mode-RGB image'):
        get_dataset('gta5', 'all', root=broken)[1]


@pytest.mark.parametrize('name, img, lbl, write', [
    ('cityscapes', 'cityscapes/leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png',
     'cityscapes/gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png', lambda p: ids_png(p, np.zeros((H + 1, W)))),
    ('synthia', 'synthia/RGB/0000000.png', 'synthia/GT/LABELS/0000000.png', lambda p: synthia_png(p, np.zeros((H, W + 2), int))),
])
def test_size_mismatch_names_both_files(broken, name, img, lbl, write):
    write(broken/lbl)
    with pytest.raises(ValueError) as e: get_dataset(name, 'val', root=broken, mode='eval')  # on opening, from the headers
    assert str(broken/img) in str(e.value) and str(broken/lbl) in str(e.value)
    assert "size_mismatch='skip'" in str(e.value) and "size_mismatch='resize'" in str(e.value)
    with pytest.warns(SizeMismatchWarning, match='dropped'):
        sk = get_dataset(name, 'val', root=broken, mode='eval', size_mismatch='skip')
    with pytest.warns(SizeMismatchWarning, match='each label resized'):
        full = get_dataset(name, 'val', root=broken, mode='eval', size_mismatch='resize')
    assert len(sk) == len(full) - 1 and full.names[0] not in sk.names
    it = full[0]  # kept: the label is resized to the image (then the eval transform leaves it at that size)
    assert it['label'].shape == tuple(Image.open(broken/img).size[::-1])


def test_size_mismatch_found_after_opening_still_named(broken):
    "A label replaced after the dataset was opened is caught when the item is read."
    ds = get_dataset('cityscapes', 'val', root=broken, mode='eval')
    lbl = broken/'cityscapes/gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png'
    ids_png(lbl, np.zeros((H + 1, W)))
    with pytest.raises(ValueError, match=re.escape(str(lbl))): ds[0]


def test_readers_never_write(root, quiet):
    snap = lambda: sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob('*'))
    before = snap()
    for name, spec in DATASETS.items():
        if city_of(name) not in (None, 'Rome', 'Taipei'): continue  # the fixtures hold two of the four cities
        for split in ('train', spec.eval_split):
            for mode in ('train', 'eval'):
                ds = get_dataset(name, split, root=root, mode=mode, crop=(3, 3), protocol=spec.protocol)
                for b in eval_loader(ds): pass
    assert snap() == before


def test_registry_facts():
    assert [default_protocol(s, t) for s, t in [('gta5', 'cityscapes'), ('synth_synthia', 'synth_cityscapes'),
                                                ('cityscapes', 'nthu_rio'), ('synthia', 'synth_nthu_tokyo')]] == \
        ['cs19', 'synthia16', 'nthu13', 'nthu13']
    assert set(PROTOCOLS['nthu13'].train_ids) < set(PROTOCOLS['synthia16'].train_ids) < set(PROTOCOLS['cs19'].train_ids)
    assert [eval_split(n) for n in ('synth_gta5', 'cityscapes', 'nthu_taipei')] == ['val', 'val', 'test']
    assert (is_rendered('synth_gta5'), is_rendered('gta5'), real_name('synth_gta5'), real_name('gta5')) == (True, False, 'gta5', 'gta5')
    assert (city_of('synth_nthu_rome'), city_of('cityscapes')) == ('Rome', None)
    for name, spec in DATASETS.items():
        assert set(spec.labelled) <= set(spec.cls.splits) and spec.eval_split in spec.labelled
        if spec.twin: assert DATASETS[spec.twin].real == name
    with pytest.raises(ConfigError, match="unknown dataset 'gta6'; valid names: gta5, synthia"): dataset_spec('gta6')
    with pytest.raises(ConfigError, match='already registered'): register_dataset('gta5', DATASETS['gta5'])


def test_rendered_rows_are_the_renderers_domains(tmp_path):
    assert [k for k, s in DATASETS.items() if s.rendered] == list(synth.DOMAINS)  # the order seeds the pictures
    for d in synth.DOMAINS:
        s = DATASETS[d]
        assert synth.domain_dir(tmp_path, d) == tmp_path/s.subdir/(s.city or '')
        assert DATASETS[s.real].twin == d and synth.SPLITS[d] == tuple(s.render) and set(s.render) <= set(s.cls.splits)


class ToyDataset(SegDataset):
    "A new benchmark, defined here: labelled test/*.png with labels in test_labels/ (Cityscapes ids), unlabelled train/."
    kind, splits = 'Toy', ('train', 'test')
    layout, obtain = '{split}/*.png + test_labels/*.png', 'made by the test'

    def _pairs(self, split):
        ims = sorted((self.root/split).glob('*.png'))
        if split == 'train': return [(p, None) for p in ims]
        return self._with_labels(ims, lambda p: self.root/'test_labels'/p.name)


def test_a_new_dataset_is_one_class_and_one_row(tmp_path, quiet):
    rgb(tmp_path/'toy'/'train'/'a.png', 1); rgb(tmp_path/'toy'/'test'/'b.png', 2)
    ids_png(tmp_path/'toy'/'test_labels'/'b.png', CS_IDS)
    register_dataset('toy', DatasetSpec(ToyDataset, 'toy', {}, None, None, protocol='nthu13', labelled=('test',), eval_split='test'))
    try:
        proto = default_protocol('synth_cityscapes', 'toy')
        assert (proto, eval_split('toy'), is_rendered('toy')) == ('nthu13', 'test', False)
        assert label_of(tmp_path, 'toy', eval_split('toy'), proto) == CS_N13
        batch = next(BatchStream(get_dataset('toy', 'train', root=tmp_path, protocol=proto, crop=(H, W), scale=None), 1))
        assert batch['has_label'].tolist() == [False]
    finally:
        DATASETS.pop('toy')
    assert 'toy' not in DATASETS
