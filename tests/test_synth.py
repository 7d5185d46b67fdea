"""The embedded benchmark's renderer under process kills and concurrent callers (sfda_nb.synth)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import ROOT
from sfda_nb.synth import MANIFEST, ensure_benchmark, read_manifest

def _spawn(root, counts, size=(64, 128), domains='synth_gta5', workers=1):
    code = (f"from sfda_nb.synth import ensure_benchmark; "
            f"ensure_benchmark({str(root)!r}, size={size!r}, counts={counts!r}, domains={domains!r}, workers={workers})")
    return subprocess.Popen([sys.executable, '-c', code], cwd=ROOT)

def _kill_when_half_done(proc, root, name='synth_gta5', n=20, timeout=60):
    "Wait until the render's temp folder holds `n` images, then SIGKILL the process (it never finishes cleanly)."
    t = time.time()
    while time.time() - t < timeout:
        parts = list(root.glob(f'.{name}.partial-*'))
        if parts and len(list((parts[0]/'images').glob('*.png'))) >= n: break
        assert proc.poll() is None, "the render finished before it could be killed: raise the count"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL); proc.wait()
    return parts[0]

def test_killed_first_render_never_looks_complete(tmp_path, one_thread):
    p = _spawn(tmp_path, 400)
    partial = _kill_when_half_done(p, tmp_path)
    assert not (tmp_path/'synth_gta5').exists() and read_manifest(tmp_path/'synth_gta5') is None
    assert partial.exists()                                  # the leftovers of the killed render...
    ensure_benchmark(tmp_path, size=(32, 64), counts=3, domains='synth_gta5')
    assert not partial.exists()                              # ...are removed by the next render
    assert read_manifest(tmp_path/'synth_gta5')['counts'] == {'train': 3}
    assert sorted(p.name for p in (tmp_path/'synth_gta5/images').iterdir()) == ['00001.png', '00002.png', '00003.png']

def test_killed_rerender_keeps_the_previous_render(tmp_path, one_thread):
    ensure_benchmark(tmp_path, size=(64, 128), counts=5, domains='synth_gta5')
    before = (tmp_path/'synth_gta5'/MANIFEST).read_text()
    p = _spawn(tmp_path, 400)
    _kill_when_half_done(p, tmp_path)
    assert (tmp_path/'synth_gta5'/MANIFEST).read_text() == before
    assert len(list((tmp_path/'synth_gta5/images').glob('*.png'))) == 5
    ino = (tmp_path/'synth_gta5').stat().st_ino
    ensure_benchmark(tmp_path, size=(64, 128), counts=5, domains='synth_gta5')     # still valid: nothing to do
    assert (tmp_path/'synth_gta5').stat().st_ino == ino

def test_concurrent_callers_share_one_render(tmp_path, one_thread):
    procs = [_spawn(tmp_path, 20, domains=['synth_gta5', 'synth_synthia']) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    for d in ('synth_gta5', 'synth_synthia'): assert read_manifest(tmp_path/d)['counts'] == {'train': 20}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.') and p.name != '.synth_render.lock'] == []


# RENDER_VERSION -> sha256 of `_fingerprint()`. A cache (rendered benchmark, cached source model) is keyed by the
# version, not by the drawing code, so a change to the pictures without a bump would silently reuse stale caches.
RENDER_FINGERPRINTS = {2: 'cb18816d1d98741693c75774bc91456e352588fd427dc3c32b5697fbd0d9b6f6',
                      3: 'cfc0fa25e07b131624ddfcf240e2d3897ea754ccc40a36b878d7239c2571bfe4'}

def _fingerprint(tmp) -> str:
    "One small scene per domain and split, written in its real encoding and read back as pixels."
    import hashlib
    import cv2
    import numpy as np
    from sfda_nb import synth
    h = hashlib.sha256()
    for d in synth.DOMAINS:
        for split in synth.SPLITS[d]:
            scene = synth.render_scene(d, (64, 128), np.random.default_rng(7))
            h.update(synth.encode_sample(d, split, scene, tmp/d, 3).tobytes())
            for k in ('img', 'label'):
                rel = synth.sample_files(d, split, 3)[k]
                if rel is not None: h.update(np.ascontiguousarray(cv2.imread(str(tmp/d/rel), cv2.IMREAD_UNCHANGED)).tobytes())
    return h.hexdigest()

def test_rendered_pictures_match_render_version(tmp_path):
    from sfda_nb import synth
    fp = _fingerprint(tmp_path)
    assert RENDER_FINGERPRINTS.get(synth.RENDER_VERSION) == fp, (
        f"the renderer now writes other pictures or labels than RENDER_VERSION={synth.RENDER_VERSION} did (fingerprint {fp}): "
        f"bump synth.RENDER_VERSION, which invalidates every rendered benchmark and cached source model, and record the new "
        f"fingerprint in RENDER_FINGERPRINTS")


@pytest.mark.parametrize('workers', [1, 2])
def test_rendering_shows_a_progress_bar(tmp_path, capsys, workers):
    "Rendering counts its images on stderr (it runs for tens of seconds at the default size); progress=False is silent."
    ensure_benchmark(tmp_path, size=(32, 64), counts=2, domains=('synth_gta5', 'synth_cityscapes'), workers=workers)
    err = capsys.readouterr().err
    n = 2 + 2*2  # synth_gta5: train; synth_cityscapes: train, val
    assert 'render' in err and f'{n}/{n}' in err, err
    ensure_benchmark(tmp_path/'quiet', size=(32, 64), counts=2, domains='synth_gta5', progress=False)
    test_err = capsys.readouterr().err
    assert 'render' not in test_err, test_err
