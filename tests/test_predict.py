"Your own images, end to end: adapt to a folder of the embedded target's images with the labels hidden, predict, export; every damaged checkpoint gets one clear error."
import dataclasses, json, shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sfda_nb import data, models, predict, source_models
from sfda_nb.core import CheckpointError, frozen_config, default_data_root


def _damaged(tmp_path) -> dict:
    "File name -> (bytes, what the error must say), for the cases an independent check fed the loaders."
    torch.save({'w': torch.zeros(1000)}, tmp_path/'good.pt')
    good = (tmp_path/'good.pt').read_bytes()
    return {'random.pt': (np.random.default_rng(1).bytes(4096), 'unrecognised binary data'),
            'text.pt': (b'this is not a checkpoint\n' * 10, 'plain text'), 'empty.pt': (b'', 'an empty file'),
            'zeros.pt': (bytes(4096), 'bytes of zeros'), 'truncated.pt': (good[:len(good) // 2], 'truncated or damaged zip archive')}


@pytest.mark.parametrize('loader', ['load_model', 'load_any', 'load_predictor'])
def test_damaged_checkpoints_one_error(tmp_path, loader):
    fn = {'load_model': models.load_model, 'load_any': models.load_any, 'load_predictor': predict.load_predictor}[loader]
    for name, (b, what) in _damaged(tmp_path).items():
        (tmp_path/name).write_bytes(b)
        with pytest.raises(CheckpointError) as e: fn(tmp_path/name)
        msg = str(e.value)
        assert str(tmp_path/name) in msg and what in msg and 'Accepted: a file written by torch.save' in msg, msg
    torch.save(torch.nn.Linear(2, 2), tmp_path/'module.pt')
    with pytest.raises(CheckpointError, match='carries code'): fn(tmp_path/'module.pt')


def _embedded_folder(tmp_path, n=24):
    "The embedded Cityscapes twin's val images copied into a user's folder (labels hidden) and their labels into another."
    from sfda_nb import synth
    root = default_data_root(); synth.ensure_benchmark(root)
    cs = root/data.dataset_spec('synth_cityscapes').subdir
    imgs, labs = tmp_path/'my_images', tmp_path/'my_labels'
    for p in sorted((cs/'leftImg8bit'/'val').rglob('*.png'))[:n]:
        rel = p.relative_to(cs/'leftImg8bit'/'val')
        (imgs/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(p, imgs/rel)
        lab = cs/'gtFine'/'val'/rel.parent/p.name.replace('_leftImg8bit.png', '_gtFine_labelIds.png')
        (labs/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(lab, labs/rel)
    return root, imgs, labs


def _snapshot(root): return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob('*'))


@pytest.mark.slow
def test_folder_adapt_predict_export(tmp_path):
    "Adapt to a folder (labels hidden), report label-free diagnostics, predict, export, all through the public API."
    from sfda_nb import train
    root, imgs, labs = _embedded_folder(tmp_path)
    before = _snapshot(imgs)
    src = source_models.source_checkpoint('synth_gta5', iters=20, data_root=str(root), verbose=False)
    cfg = frozen_config(train.TrainConfig, dict(source_ckpt=str(src), target=f'folder:{imgs},size=native', iters=3, batch_size=2,
                                                seed=0, threads=1, eval_max_images=4, out_dir=str(tmp_path/'run')))
    assert data.default_protocol(cfg.source, cfg.target) == 'cs19'  # the source's protocol; no protocol argument
    run = train.prepare(cfg); train.fit(run)
    d = predict.run_diagnostics(run)
    assert d['images'] == 3 and 0 < d['mean_reliability'] <= 100 and 0 <= d['changed_pixels'] <= 100, d  # 24 images: val = 0, 10, 20
    m = train.run(dataclasses.replace(cfg, out_dir=str(tmp_path/'run2')))
    assert m['miou'] is None and (tmp_path/'run2'/'teacher.pt').is_file() and (tmp_path/'run2'/'metric.pt').is_file()
    s = predict.predict(tmp_path/'run2'/'teacher.pt', imgs, tmp_path/'pred', device='cpu', progress=False)
    assert (s['predicted'], s['reliability']) == (24, True)
    lab = sorted((tmp_path/'pred').rglob('*_trainid.png'))
    assert len(lab) == 24 and set(np.unique(np.asarray(Image.open(lab[0])))) <= set(range(19)) | {255}
    for fmt in ('onnx', 'torchscript'):
        out = predict.export_model(tmp_path/'run2'/'teacher.pt', fmt)
        c = predict.compare_export(predict.Deployable(predict.load_predictor(tmp_path/'run2'/'teacher.pt').model).eval(), out)
        assert c['rel_diff'] <= 1e-4 and c['argmax_agreement'] >= 0.999, (fmt, c)
        assert predict.load_export(out)[1]['class_names'] == list(data.PROTOCOLS['cs19'].class_names)
    assert _snapshot(imgs) == before  # nothing was written into the input folder
    # the same folder with its labels: the run scores itself with the usual evaluator
    lab_cfg = dataclasses.replace(cfg, target=f'folder:{imgs},labels={labs},size=native', out_dir=str(tmp_path/'run3'))
    m3 = train.run(lab_cfg)
    assert isinstance(m3['miou'], float) and m3['source_only']['n_images'] == 3


def test_folder_bad_input(tmp_path):
    "Each bad input of a folder target is one clear error, raised before anything trains."
    rng = np.random.default_rng(0)
    f = tmp_path/'imgs'; f.mkdir()
    for i in range(3): Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(f/f'{i}.png')
    (f/'2.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 30)
    with pytest.raises(OSError, match=f'cannot read image {f/"2.png"}'): data.get_dataset(f'folder:{f}', 'train')
    e = tmp_path/'empty'; e.mkdir()
    with pytest.raises(ValueError, match='holds 0 png/jpg images'): data.get_dataset(f'folder:{e}', 'train')
    with pytest.raises(Exception, match='is not key=value'): data.dataset_spec(f'folder:{f},colour=red')
    (f/'2.png').unlink()
    with pytest.raises(ValueError, match='fewer than a batch of 4'):
        data.BatchStream(data.get_dataset(f'folder:{f}', 'train', crop=(8, 8)), 4)


def test_cli_functions(tmp_path, capsys):
    "main_predict / main_export: what `python -m sfda_nb.cli predict|export` runs."
    net = models.build_model('small', 13, width=8, feat_dim=32, decoder=0)
    ck = models.save_model(tmp_path/'teacher.pt', net, protocol='nthu13')
    f = tmp_path/'imgs'; f.mkdir()
    for i in range(3): Image.fromarray(np.full((16, 24, 3), 40 * i, np.uint8)).save(f/f'{i}.jpg')
    s = predict.main_predict(['--ckpt', str(ck), '--images', str(f), '--out', str(tmp_path/'out'), '--device', 'cpu'])
    assert (s['predicted'], s['protocol'], s['reliability']) == (3, 'nthu13', False)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])['predicted'] == 3
    assert predict.main_predict(['--ckpt', str(ck), '--images', str(f), '--out', str(tmp_path/'out'), '--device', 'cpu'])['skipped'] == 3
    out = predict.main_export(['--ckpt', str(ck), '--format', 'onnx'])
    assert out == tmp_path/'teacher.onnx' and predict.load_export(out)[1]['protocol'] == 'nthu13'
    with pytest.raises(FileExistsError): predict.main_export(['--ckpt', str(ck), '--format', 'onnx'])


@pytest.mark.slow
def test_export_full_deeplabv2_r101(tmp_path):
    "DeepLabV2-ResNet-101 (the field's model, random weights) exports to ONNX and matches torch with other input sizes."
    torch.manual_seed(0)
    ck = models.save_model(tmp_path/'teacher.pt', models.build_model('deeplabv2_r101', 19), protocol='cs19')
    out = predict.export_model(ck, 'onnx', check=False)
    c = predict.compare_export(predict.Deployable(predict.load_predictor(ck).model).eval(), out)
    assert c['rel_diff'] <= 1e-4 and c['argmax_agreement'] >= 0.999, c
