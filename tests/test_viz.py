"""Headless tests of sfda_nb.viz: drive the widgets as a user would (set a control's value) and check what
the figures show; synthetic tensors and a tiny model, a few seconds in all."""
import io, json, math, os, re, subprocess, threading, time
from pathlib import Path
from contextlib import redirect_stdout
from types import SimpleNamespace

import matplotlib
matplotlib.use('Agg')
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfda_nb import metric, models, viz, evaluation
from sfda_nb.reliability import MetricReliability
from sfda_nb.core import IGNORE, upsample

PAL = np.array([[128, 64, 128], [0, 0, 142], [70, 130, 180]], np.uint8)
PROTO = SimpleNamespace(name='toy3', class_names=('road', 'car', 'sky'), num_classes=3, palette=PAL)


def toy_dataset(n=4, H=32, W=48, seed=0, labels=True):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        label = torch.zeros(H, W, dtype=torch.long); label[H // 3:] = 1; label[2 * H // 3:] = 2
        img = (torch.rand(3, H, W, generator=g) * 90 + label[None] * 60).to(torch.uint8)
        items.append({'img': img, 'label': label if labels else torch.full((H, W), IGNORE),
                      'has_label': labels, 'name': f'toy_{seed}_{i}'})
    return items


@pytest.fixture(scope='module')
def setup():
    "A tiny network trained for a few steps (so confidences spread over [0.3, 1]) and a metric learner."
    torch.manual_seed(0); torch.set_num_threads(1)
    net = models.build_model('small', 3, width=4, feat_dim=8)
    ds = toy_dataset()
    x = torch.stack([d['img'] for d in ds]).float() / 255
    y = torch.stack([d['label'] for d in ds])
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(8):
        loss = F.cross_entropy(upsample(net(x).logits, y.shape[-2:]), y)
        opt.zero_grad(); loss.backward(); opt.step()
    learner = metric.MetricLearner(8, 3, dim=8, hidden=16, n_per_class=32, lr=1e-2)
    g = torch.Generator().manual_seed(0)
    net.eval()
    with torch.no_grad(): out = net(x)
    for _ in range(10): learner.update(out.feats, out.logits.argmax(1), g)
    return SimpleNamespace(net=net, learner=learner, ds=ds)


def panels(fig):
    "The nine panel axes of an explorer figure (colorbars come after them)."
    return fig.axes[:9]


def test_explorer_controls_change_the_figure(setup):
    preds = viz.Predictions(setup.net, setup.net, MetricReliability(setup.learner), protocol=PROTO)
    unl = toy_dataset(2, seed=5, labels=False)
    ex = viz.ReliabilityExplorer({'val': setup.ds, 'train': unl}, preds, threshold=0.5)
    titles = [a.get_title() for a in panels(ex.fig)]
    assert titles[:3] == ['image toy_0_0', 'ground truth', 'teacher pseudo-label']
    assert titles[3].startswith('metric reliability') and titles[4].startswith('softmax confidence')
    assert titles[5] == 'student prediction' and titles[6].startswith('errors (red): ')
    assert len(ex.fig.axes) == 9 + 3  # colourbars: reliability, confidence, reliability of discarded

    ex.index.value = 3
    assert panels(ex.fig)[0].get_title() == 'image toy_0_3'

    # the threshold panels follow the slider, pixel for pixel
    p = ex.current()
    assert p.conf.min() < 0.6 and p.conf.max() > 0.9  # a spread of confidences
    shown = []
    for t in (0.3, 0.6, 0.8, 0.95, 1.0):
        ex.threshold.value = t
        keep_ax, rel_ax = panels(ex.fig)[7], panels(ex.fig)[8]
        n_drop = int((p.conf < t).sum())
        assert keep_ax.get_title() == f'threshold {t:.4f} keeps {100 * (1 - n_drop / p.conf.size):.0f}%'
        shown_rel = rel_ax.images[0].get_array()
        assert int((~shown_rel.mask).sum()) == n_drop
        np.testing.assert_allclose(shown_rel.compressed(), p.rel[p.conf < t], rtol=1e-6)
        assert f'discards {100 * n_drop / p.conf.size:.1f}% of {p.conf.size} pixels' in ex.summary()
        shown.append(n_drop)
    assert shown == sorted(shown) and shown[0] < shown[-1]

    # a focus class: only that class in the label panels, the legend names it
    ex.threshold.value = 0.8
    ex.focus.value = 2
    assert ex.fig._suptitle.get_text() == 'toy_0_3: class sky'
    gt = panels(ex.fig)[1].images[0].get_array().reshape(-1, 3)
    assert {tuple(c) for c in np.unique(gt, axis=0)} <= {(0, 0, 0), tuple(PAL[2]), (255, 255, 255)}  # ignored black, other classes white
    legend = [t.get_text() for t in ex.fig.legends[0].texts]
    assert legend[:2] == ['sky', 'discarded by the threshold'] and 'other classes' in legend
    assert f'of {int((p.pseudo == 2).sum())} pixels pseudo-labelled sky' in ex.summary()

    # another split: the slider is clamped and the missing labels are said, not drawn
    ex.split.value = 'train'
    assert (ex.index.max, ex.index.value) == (1, 1)
    assert panels(ex.fig)[1].texts[0].get_text() == 'no labels in this split'
    assert panels(ex.fig)[0].get_title() == 'image toy_5_1'


def test_explorer_renders_into_its_output_in_a_kernel(setup, monkeypatch):
    shown = []
    monkeypatch.setattr(viz, '_in_kernel', lambda: True)
    monkeypatch.setattr(viz, 'display', lambda obj: shown.append(obj))
    ex = viz.ReliabilityExplorer(setup.ds, viz.Predictions(setup.net, protocol=PROTO))
    ex.index.value = 1
    ex.focus.value = 0
    assert len(shown) == 3 and shown[-1] is ex.fig  # one figure per render, the latest one
    assert ex.split.layout.display == 'none'  # a single dataset: no split control
    assert panels(ex.fig)[3].texts[0].get_text() == 'no reliability map'
    assert panels(ex.fig)[5].texts[0].get_text() == 'no student'
    n = ex.predictions.n_computed
    ex.focus.value = 1; ex.threshold.value = 0.3
    assert ex.predictions.n_computed == n  # the same image again: from the cache


def test_predictions_from_run_round_trip(setup, tmp_path):
    preds = viz.Predictions(setup.net, setup.net, MetricReliability(setup.learner))
    models.save_model(tmp_path/'teacher.pt', setup.net, {'method': 'stvm'}, protocol='cs19')
    models.save_model(tmp_path/'student.pt', setup.net, {'method': 'stvm'}, protocol='cs19')
    torch.save(setup.learner.checkpoint(), tmp_path/'metric.pt')
    (tmp_path/'metrics.json').write_text(json.dumps({'protocol': 'cs19', 'miou': 1.0, 'reliability': 'metric', 'config': {}}))
    loaded = viz.Predictions.from_run(tmp_path, device='cpu')
    a, b = preds.get(setup.ds, 2), loaded.get(setup.ds, 2)
    np.testing.assert_allclose(a.rel, b.rel, atol=1e-5)
    np.testing.assert_array_equal(a.pseudo, b.pseudo)
    assert loaded.metrics['miou'] == 1.0 and loaded.protocol == 'cs19'


def test_explorer_on_a_folder_run(tmp_path):
    "Adapt to a folder of one's own images (no labels) for 3 iterations, then browse it: pseudo-label and reliability side by side."
    from PIL import Image
    from sfda_nb import train
    from sfda_nb.core import frozen_config
    g = np.random.default_rng(0)
    imgs = tmp_path/'my_images'; (imgs/'street').mkdir(parents=True)
    for i in range(12):
        a = g.integers(0, 60, (48, 64, 3)); a[16:] += 80; a[32:] += 80
        Image.fromarray(a.astype(np.uint8)).save(imgs/'street'/f'{i:02d}.png')
    torch.manual_seed(0)
    models.save_model(tmp_path/'source.pt', models.build_model('small', 19, width=4, feat_dim=8), protocol='cs19')
    cfg = frozen_config(train.TrainConfig, dict(
        source='gta5', source_ckpt=str(tmp_path/'source.pt'), target=f'folder:{imgs},size=native', iters=3, batch_size=2,
        crop=(32, 32), metric_warmup=1, metric_dim=8, n_per_class=16, eval_every=0, seed=0, threads=1,
        data_root=str(tmp_path/'no_data'), out_dir=str(tmp_path/'run')))
    m = train.run(cfg)
    assert m['miou'] is None and m['reliability'] == 'metric' and (tmp_path/'run'/'metric.pt').is_file()

    ex = viz.ReliabilityExplorer.from_run(tmp_path/'run', device='cpu')
    assert list(ex.datasets) == ['val', 'train'] and [len(d) for d in ex.datasets.values()] == [2, 10]
    assert ex.class_names == list(viz.data.get_protocol('cs19').class_names)
    fig = ex.render()
    titles = [a.get_title() for a in panels(fig)]
    assert titles[0] == 'image street/00' and titles[2] == 'teacher pseudo-label'
    assert titles[3].startswith('metric reliability (mean ') and titles[7].startswith('threshold 0.9680 keeps')
    assert panels(fig)[3].images and panels(fig)[2].images  # reliability and pseudo-label are drawn
    assert [panels(fig)[i].texts[0].get_text() for i in (1, 6)] == ['no labels in this split'] * 2  # ground truth, errors
    ex.split.value = 'train'
    ex.index.value = 4
    p = ex.current()
    assert panels(ex.fig)[0].get_title() == 'image street/05' and p.label is None and p.rel.shape == (48, 64)
    assert 'right' not in ex.summary() and 'mean reliability of discarded' in ex.summary()
    assert panels(ex.fig)[1].texts[0].get_text() == 'no labels in this split'

    # the images gone: one clear error naming the folder
    imgs.rename(tmp_path/'moved')
    with pytest.raises(FileNotFoundError, match=re.escape(f'folder {imgs} does not exist')):
        viz.ReliabilityExplorer.from_run(tmp_path/'run', device='cpu')
    with pytest.raises(FileNotFoundError, match='metrics.json does not exist'):
        viz.ReliabilityExplorer.from_run(tmp_path, device='cpu')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_predictions_on_gpu_come_back_to_the_cpu(setup):
    import copy
    net, learner = copy.deepcopy(setup.net).cuda(), copy.deepcopy(setup.learner).cuda()
    gpu = viz.Predictions(net, net, MetricReliability(learner)).get(setup.ds, 0)
    cpu = viz.Predictions(setup.net, setup.net, MetricReliability(setup.learner)).get(setup.ds, 0)
    assert isinstance(gpu.rel, np.ndarray) and isinstance(gpu.pseudo, np.ndarray)
    np.testing.assert_allclose(gpu.conf, cpu.conf, atol=1e-3)
    fig = viz.explorer_panels(gpu, PAL)
    assert len(panels(fig)) == 9
    assert viz.colorize(torch.tensor([[0, 2]], device='cuda'), PAL).tolist() == [[PAL[0].tolist(), PAL[2].tolist()]]


def test_live_frontend_detection(monkeypatch):
    for k in ('PAPERMILL', 'IN_TEST', 'CI', 'SFDA_NO_LIVE', 'JPY_SESSION_NAME'): monkeypatch.delenv(k, raising=False)
    assert viz.live_frontend() is False  # no kernel
    monkeypatch.setattr(viz, 'get_ipython', lambda: SimpleNamespace(kernel=object(), user_ns={}))
    assert viz.live_frontend() is False  # a kernel, but no frontend (nbclient, papermill)
    monkeypatch.setenv('JPY_SESSION_NAME', '/home/u/nbs/05_train.ipynb')
    assert viz.live_frontend() is True  # JupyterLab's kernel
    for k in ('PAPERMILL', 'IN_TEST', 'CI'):
        monkeypatch.setenv(k, '1'); assert viz.live_frontend() is False; monkeypatch.delenv(k)
    monkeypatch.setenv('CI', 'false'); assert viz.live_frontend() is True
    monkeypatch.delenv('JPY_SESSION_NAME')
    monkeypatch.setattr(viz, 'get_ipython', lambda: SimpleNamespace(kernel=object(), user_ns={'__vsc_ipynb_file__': 'x.ipynb'}))
    assert viz.live_frontend() is True  # VS Code


def fake_run(evals=(), warmup=0):
    return SimpleNamespace(total=40, warmup=warmup, a=SimpleNamespace(it=0), evals=list(evals), last_log=None)

def step(run, view, it, **log):
    "What train.fit does: the step, JsonLog's record every 10 steps, then the other callbacks."
    run.a.it = it
    if it % 10 == 0 or it == run.total: run.last_log = {'iter': it, 'loss': 0.5, 'metric_loss': 2.0, 'rel_mean': 0.7, 'conf_mean': 0.9, **log}
    view.after_step(run, None)


def test_live_view_prints_where_nobody_watches(monkeypatch):
    monkeypatch.setenv('IN_TEST', '1')
    run, view = fake_run(), viz.LiveView(every=20)
    buf = io.StringIO()
    with redirect_stdout(buf):
        view.before_fit(run)
        for it in range(1, 41):
            if it == 20: run.evals.append({'iter': 20, 'teacher': {'miou': 41.0}, 'student': {'miou': 40.0}})
            step(run, view, it)
        run.evals.append({'iter': 40, 'teacher': {'miou': 43.5}, 'student': {'miou': 42.0}})
        view.after_fit(run)
    assert view.live is False and view.fig is None
    assert [r['iter'] for r in view.records] == [10, 20, 30, 40]  # each log record once
    assert buf.getvalue().splitlines() == [
        'iter 20: loss 0.500, metric loss 2.000, reliability 0.700, confidence 0.900; student step 20: mIoU teacher 41.0, student 40.0',
        'iter 40: loss 0.500, metric loss 2.000, reliability 0.700, confidence 0.900; student step 20: mIoU teacher 41.0, student 40.0',
        'done: student step 40: mIoU teacher 43.5, student 42.0']


def test_live_view_updates_a_figure_in_jupyterlab(monkeypatch):
    shown = []
    monkeypatch.setattr(viz, 'live_frontend', lambda: True)
    monkeypatch.setattr(viz, 'display', lambda obj: shown.append(obj))
    run, view = fake_run(warmup=10), viz.LiveView()
    buf = io.StringIO()
    with redirect_stdout(buf):
        view.before_fit(run)
        for it in range(1, 31): step(run, view, it, rel_mean=it / 100)
        run.evals.append({'iter': 20, 'teacher': {'miou': 44.0}, 'student': {'miou': 43.0}})  # student step 20 = iteration 30
        view.after_fit(run)
    assert buf.getvalue() == ''  # no log lines when live
    assert shown == [view.fig]  # displayed once, then updated in place
    tr = {t.name: t for t in view.fig.data}
    assert list(tr['rel_mean'].x) == [10, 20, 30] and list(tr['rel_mean'].y) == [0.1, 0.2, 0.3]
    assert list(tr['teacher_miou'].y) == [44.0] and list(tr['student_miou'].x) == [30]


def test_diagnostics(setup, tmp_path):
    preds = viz.Predictions(setup.net, setup.net, MetricReliability(setup.learner))
    sc = viz.pixel_scores(preds, setup.ds, max_pixels=500)
    assert len(sc['correct']) == 4 * 500
    from sklearn.metrics import roc_auc_score
    tab = viz.auroc_table({k: sc[k] for k in ('reliability', 'confidence', 'certainty')}, sc['correct'])
    for name, row in tab.iterrows(): assert math.isclose(row['auroc'], roc_auc_score(sc['correct'], sc[name]), abs_tol=1e-9)
    assert 'auroc' in repr(tab).splitlines()[0]
    # ECE by hand on a tiny example: bins [0, .5) and [.5, 1]
    c = viz.calibration(np.array([0.2, 0.4, 0.9, 0.7]), np.array([0, 1, 1, 1], bool), bins=2)
    assert np.allclose(c['acc'], [0.5, 1.0]) and np.allclose(c['score'], [0.3, 0.8])
    assert math.isclose(c['ece'], 0.5 * 0.2 + 0.5 * 0.2)
    fig = viz.reliability_diagram({'reliability': sc['reliability']}, sc['correct'])
    assert fig.axes[0].get_legend().texts[1].get_text().startswith('reliability (ECE ')
    # per-class IoU from EvalResults and a metrics.json record
    conf = torch.tensor([[5, 1, 0], [0, 4, 0], [0, 0, 0]])
    ev = evaluation.EvalResult(conf, ['road', 'car', 'sky'], 'toy3', 2)
    rec = {'teacher': {'last': 70.0, 'last_per_class': {'road': 80.0, 'car': 60.0, 'sky': None}}, 'student': None,
           'class_names': ['road', 'car', 'sky'], 'source_only': ev.to_dict()}
    fig = viz.per_class_iou_bars({'source': ev, 'adapted': rec})
    ax = fig.axes[0]
    assert [round(b.get_height(), 1) for b in ax.containers[0]] == [round(500 / 6, 1), 80.0, 0.0]
    assert ax.get_legend().texts[1].get_text() == 'adapted (mIoU 70.0)'
    # training curves from a log file
    (tmp_path/'log.jsonl').write_text('\n'.join(json.dumps({'iter': i, 'loss': 1 / i, 'rel_mean': 0.5}) for i in (10, 20)) + '\n')
    fig = viz.training_curves(viz.read_log(tmp_path))
    assert list(fig.axes[0].lines[0].get_ydata()) == [0.1, 0.05]
    assert not fig.axes[3].lines  # no evaluation yet: an empty mIoU panel


def test_threshold_control_reaches_0968_and_discarded_pixels_have_their_own_colour(setup):
    ex = viz.ReliabilityExplorer(setup.ds, viz.Predictions(setup.net, setup.net, MetricReliability(setup.learner), protocol=PROTO), index=3)
    th = ex.threshold
    assert (th.step, th.readout_format, f'{th.value:.4f}') == (0.0001, '.4f', '0.9680')  # DACS's default; 4 digits: 0.9999 is not 1
    assert 'confidence ≥ 0.9680 discards' in ex.summary()
    th.value = 0.97; th.value = 0.968  # and back, exactly
    assert f'{th.value:.3f}' == '0.968' and panels(ex.fig)[7].get_title().startswith('threshold 0.9680 keeps')
    for pal in (PAL, viz.palette_of('cs19')):  # the real palette has "building" (70, 70, 70); ignored pixels are black
        c = viz.discard_colour(pal).astype(int)
        assert not (pal == c).all(1).any() and tuple(c) not in {(0, 0, 0), (255, 255, 255)}
        assert np.sqrt(((pal.astype(int) - c) ** 2).sum(1)).min() > 100
    p, c = ex.current(), viz.discard_colour(PAL)
    shown = panels(ex.fig)[7].images[0].get_array()
    drop = p.conf < th.value
    assert drop.any() and (shown[drop] == c).all() and not (shown[~drop] == c).all(-1).any()
    legend = [t.get_text() for t in ex.fig.legends[0].texts]
    assert 'discarded by the threshold' in legend
    handle = ex.fig.legends[0].legend_handles[legend.index('discarded by the threshold')]
    assert np.allclose(handle.get_facecolor()[:3], c / 255)


def test_explorer_zooms_one_panel_to_the_image_size(setup):
    items = toy_dataset(1, H=512, W=1024)  # a Cityscapes-sized image
    ex = viz.ReliabilityExplorer(items, viz.Predictions(setup.net, setup.net, MetricReliability(setup.learner), protocol=PROTO))
    assert ex.fig.get_size_inches()[0] * ex.fig.dpi == 1300 and len(panels(ex.fig)) == 9
    ex.zoom.value = 'pseudo-label'
    assert [a.get_title() for a in ex.fig.axes] == ['teacher pseudo-label']
    ex.fig.canvas.draw()
    assert ex.fig.axes[0].get_window_extent().width >= 0.95 * 1024  # about one screen pixel per image pixel
    ex.zoom.value = 'reliability'
    assert len(ex.fig.axes) == 2  # the panel and its colourbar
    ex.width.value = 640
    assert ex.fig.get_size_inches()[0] * ex.fig.dpi == 640
    ex.zoom.value = ''
    assert len(panels(ex.fig)) == 9 and ex.fig.get_size_inches()[0] * ex.fig.dpi == 640


def test_live_view_gives_each_loss_its_axis_and_draws_from_the_first_point(monkeypatch):
    monkeypatch.setattr(viz, 'live_frontend', lambda: True)
    monkeypatch.setattr(viz, 'display', lambda obj: None)
    run, view = fake_run(), viz.LiveView()
    view.before_fit(run)
    step(run, view, 10, loss=0.2, metric_loss=10.0)
    tr = {t.name: t for t in view.fig.data}
    assert (list(tr['loss'].y), list(tr['metric_loss'].y)) == ([0.2], [10.0])  # one point each, already drawn:
    assert all('markers' in t.mode for t in view.fig.data)  # a lone point shows as a marker
    assert tr['loss'].yaxis != tr['metric_loss'].yaxis  # ~0.2 and ~10 on their own scales
    assert [a.text for a in view.fig.layout.annotations] == list(viz.LIVE_PANELS)


def run_records(n=12, warmup=20):
    recs = [{'iter': i, 'student_step': max(i - warmup, 0), 'loss': None if i <= warmup else 0.2 + 1 / i,
             'metric_loss': 12 - i / 10, 'rel_mean': 0.5 + i / 1000, 'conf_mean': 0.9, 'lr': 1e-4} for i in range(10, 10 * n + 10, 10)]
    if n > 5: recs[5].update(teacher_miou=40.0, student_miou=39.0)  # iteration 60 = student step 40
    return recs

def write_progressively(run_dir: Path, records, pause, metrics=None):
    "A run in another process, as the view sees it: the folder appears, lines come one by one (each in two writes), then metrics.json."
    def go():
        time.sleep(pause)
        run_dir.mkdir(parents=True)
        for r in records:
            line = json.dumps(r) + '\n'
            with open(run_dir/'log.jsonl', 'a') as f:
                f.write(line[:9]); f.flush(); time.sleep(pause / 2); f.write(line[9:])
            time.sleep(pause / 2)
        if metrics is not None: (run_dir/'metrics.json').write_text(json.dumps(metrics))
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_live_view_follows_a_run_folder_written_progressively(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(viz, 'live_frontend', lambda: True)
    monkeypatch.setattr(viz, 'display', shown.append)
    run_dir, recs = tmp_path/'runs'/'stvm-metric-classmix-s0', run_records()
    hist = [{'iter': 40, 'teacher': {'miou': 40.0}, 'student': {'miou': 39.0}},
            {'iter': 100, 'teacher': {'miou': 43.0}, 'student': {'miou': 42.5}}]
    view = viz.LiveView.follow(run_dir, every=0.02)  # the folder does not exist yet
    assert view.live and shown == [view.fig]
    writer = write_progressively(run_dir, recs, 0.06, {'config': {'iters': 100}, 'history': hist})
    seen = []
    while writer.is_alive():
        seen.append((len(view.records), len(view.fig.data[0].x), view.fig.layout.title.text)); time.sleep(0.01)
    assert view.join(10) and view.error is None and view.finished
    counts = sorted({n for n, _, _ in seen})
    assert len(counts) >= 6 and counts[0] == 0  # the figure grew while the log did, never a half line
    assert any("log.jsonl; the folder does not exist (yet))" in t and ' (waiting ' in t for _, _, t in seen)  # what it waits for
    assert any(n == 3 and pts == 1 for n, pts, _ in seen)  # iteration 30: the first student loss shows at once
    tr = {t.name: t for t in view.fig.data}
    assert list(tr['loss'].x) == list(range(30, 130, 10)) and len(tr['metric_loss'].x) == 12
    assert (list(tr['teacher_miou'].x), list(tr['student_miou'].y)) == ([60, 120], [39.0, 42.5])  # metrics.json, + 20 warm-up
    assert view.fig.layout.title.text == 'stvm-metric-classmix-s0: student step 100 (iter 120: 20 warm-up iterations first) (finished)'
    assert not view._thread.is_alive()


def test_live_view_follow_prints_where_nobody_watches_and_stops_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('IN_TEST', '1')
    recs = run_records(5)  # iterations 10..50; metrics.json of an earlier, shorter run: a resume that trains on
    (tmp_path/'log.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in recs))
    (tmp_path/'metrics.json').write_text(json.dumps({'config': {'iters': 20}, 'history': []}))
    view = viz.LiveView.follow(tmp_path, every=30)
    t0 = time.time()
    while len(view.records) < 5 and time.time() - t0 < 10: time.sleep(0.01)
    assert view.live is False and view.fig is None and not view.finished
    t0 = time.time(); view.stop()
    assert time.time() - t0 < 2 and not view._thread.is_alive()
    assert capsys.readouterr().out.splitlines() == [
        'student step 30 (iter 50: 20 warm-up iterations first): loss 0.220, metric loss 7.000, reliability 0.550, confidence 0.900',
        f'LiveView.follow({tmp_path}): (stopped by stop())']  # it says that it stopped
    # a finished run, read in one go (background=False returns when it is done), and a timeout
    (tmp_path/'metrics.json').write_text(json.dumps({'config': {'iters': 30}, 'history': []}))
    done = viz.LiveView.follow(tmp_path, live=False, background=False)
    assert done.finished and [len(t.x) for t in done.figure().data][:2] == [3, 5]
    stuck = viz.LiveView.follow(tmp_path/'never', every=0.05, live=False, timeout=0.2)
    assert stuck.join(5) and not stuck.finished and stuck.records == []


def test_build_docs_never_calls_the_quarto_installer(tmp_path):
    "Without Quarto, tools/build_docs.sh must not try to install it (sudo, a download): no such lines in its output."
    env = {**os.environ, 'DOCS_OUT': str(tmp_path/'html'), 'DOCS_EXEC': '0', 'OMP_NUM_THREADS': '1',
           'PATH': os.pathsep.join(p for p in os.environ['PATH'].split(os.pathsep) if not (Path(p)/'quarto').exists())}
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(['bash', 'tools/build_docs.sh', 'index'], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    for bad in ('Quarto is not installed', 'Cancelled', 'sudo', 'quarto-linux', 'Installing or upgrading quarto'):
        assert bad not in out, f'{bad!r} in the output of tools/build_docs.sh:\n{out[-3000:]}'
    assert (tmp_path/'html'/'index.html').exists()


def test_docs_processing_runs_on_every_notebook():
    """nbdev's docs processing executes every cell that has an import (and every exported cell), out of order with the rest:
    a cell that mixes an import with code using an earlier cell's names fails there, and only there (CI runs it too)."""
    env = {**os.environ, 'DOCS_PROC_ONLY': '1', 'OMP_NUM_THREADS': '1',
           'PATH': os.pathsep.join(p for p in os.environ['PATH'].split(os.pathsep) if not (Path(p)/'quarto').exists())}
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(['bash', 'tools/build_docs.sh'], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert 'Found cells containing imports and other code' not in out, out[-4000:]


def test_explorer_outside_a_watched_notebook_shows_its_figure_not_a_widget_repr(setup, monkeypatch):
    "In the docs or papermill (no live frontend) the explorer displays its summary and figure, never `VBox(children=...)`."
    shown = []
    monkeypatch.setenv('IN_TEST', '1'); monkeypatch.setattr(viz, 'display', shown.append)
    ex = viz.ReliabilityExplorer(setup.ds, viz.Predictions(setup.net, setup.net, MetricReliability(setup.learner), protocol=PROTO), index=1)
    shown.clear(); ex._ipython_display_()
    assert [type(x).__name__ for x in shown] == ['HTML', 'Figure'] and 'discards' in shown[0].data and shown[1] is ex.fig
    monkeypatch.setattr(viz, 'live_frontend', lambda: True)
    shown.clear(); ex._ipython_display_()
    assert shown == [ex.box]
