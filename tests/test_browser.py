"""Real-browser checks with headless Debian Chromium driven by Playwright (never `playwright install`).

1. JupyterLab on 127.0.0.1 opens a small generated notebook that builds the `ReliabilityExplorer` on a
   tiny synthetic dataset, a live `LiveView` figure, and a `LiveView.follow` of a run folder that another
   process writes; all cells run in the browser; the widgets and figures must render, with no "Error
   displaying widget"; typing 0.968 into the threshold readout and choosing a wider figure must update
   the explorer; the followed figure must fill and say the run finished. Screenshot: under the test's tmp dir, copied to /tmp/viz_browser.png.
2. `tools/build_docs.sh 06_viz` builds the offline HTML docs for one chapter; the page must show the
   API docs, inline figures and the interactive plotly figure with the network blocked; the build must
   not try to install Quarto. Screenshot copied to /tmp/docs_browser.png.

Both skip with a reason when /usr/bin/chromium or playwright is missing (CI installs chromium with apt).
"""
import json, os, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT, VENV_BIN

CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason='Debian chromium is not installed at /usr/bin/chromium '
                                '(apt-get install -y chromium); tests never download a browser')
sync_api = pytest.importorskip('playwright.sync_api', reason='the playwright Python package is not installed')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def launch(pw):
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)

def offline(page, allowed_prefix: str):
    "Abort every request that does not start with `allowed_prefix` (data: and blob: URLs pass)."
    def route(r):
        u = r.request.url
        if u.startswith(allowed_prefix) or u.startswith(('data:', 'blob:')): r.continue_()
        else: r.abort()
    page.route('**/*', route)


def accept_kernel_dialog(page, timeout=60):
    "Accept JupyterLab's 'Select Kernel' dialog if it shows, then wait until the notebook's kernel is idle."
    t0 = time.time()
    while time.time() - t0 < timeout:
        dlg = page.locator('.jp-Dialog .jp-mod-accept')
        if dlg.count(): dlg.first.click()
        elif page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() and \
                'No Kernel' not in page.locator('.jp-Toolbar-kernelName').first.inner_text():
            return
        page.wait_for_timeout(500)
    raise TimeoutError(f'the notebook kernel did not become idle within {timeout} s')


# ---------------------------------------------------------------- the notebook JupyterLab runs
CELLS = [
    """import numpy as np, torch
import torch.nn.functional as F
from types import SimpleNamespace
from sfda_nb import models, metric
from sfda_nb.core import IGNORE
from sfda_nb.viz import Predictions, ReliabilityExplorer, LiveView
from sfda_nb.reliability import MetricReliability""",
    """def toy_dataset(n, seed):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        label = torch.zeros(48, 80, dtype=torch.long); label[16:] = 1; label[32:] = 2
        img = (torch.rand(3, 48, 80, generator=g) * 60 + label[None] * 80).to(torch.uint8)
        items.append({'img': img, 'label': label, 'has_label': True, 'name': f'toy_{seed}_{i}'})
    return items
proto = SimpleNamespace(name='toy3', class_names=('road', 'car', 'sky'), num_classes=3,
                        palette=np.array([[128, 64, 128], [0, 0, 142], [70, 130, 180]], np.uint8))
torch.manual_seed(0)
net = models.build_model('small', 3, width=4, feat_dim=8)
x = torch.stack([d['img'] for d in toy_dataset(3, 0)]).float() / 255
y = torch.stack([d['label'] for d in toy_dataset(3, 0)])
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
for _ in range(8):  # a few steps, so that confidences spread out
    loss = F.cross_entropy(F.interpolate(net(x).logits, size=y.shape[-2:], mode='bilinear'), y)
    opt.zero_grad(); loss.backward(); opt.step()
learner = metric.MetricLearner(8, 3, dim=8, hidden=16, n_per_class=32)
preds = Predictions(net, net, MetricReliability(learner), protocol=proto)""",
    """explorer = ReliabilityExplorer({'val': toy_dataset(3, 0), 'train': toy_dataset(2, 1)}, preds, threshold=0.5)
explorer""",
    """live = LiveView()  # live=None: it must find JupyterLab's frontend by itself
live.before_fit(SimpleNamespace(total=40, evals=[]))
print('LIVE', live.live)
evals = [{'iter': 20, 'teacher': {'miou': 41.0}, 'student': {'miou': 39.5}}]
for i in range(10, 50, 10):
    live.add({'iter': i, 'loss': 1 / i, 'metric_loss': 4 - i / 20, 'rel_mean': 0.5 + i / 100, 'conf_mean': 0.8}, evals if i >= 20 else [])""",
    """import subprocess, sys, tempfile
from pathlib import Path
WRITER = '''
import json, sys, time
from pathlib import Path
d = Path(sys.argv[1]); d.mkdir(parents=True)
for i in range(10, 90, 10):
    rec = {'iter': i, 'student_step': i, 'loss': 0.2 + 1 / i, 'metric_loss': 12 - i / 10, 'rel_mean': 0.6, 'conf_mean': 0.9}
    with open(d / 'log.jsonl', 'a') as f: f.write(json.dumps(rec) + chr(10))
    time.sleep(0.3)
(d / 'metrics.json').write_text(json.dumps({'config': {'iters': 80}, 'history': [{'iter': 40, 'teacher': {'miou': 40.0}, 'student': {'miou': 39.0}}]}))
'''
run_dir = Path(tempfile.mkdtemp()) / 'cli_run'
follow = LiveView.follow(run_dir, every=0.2)  # a run in another process, followed through its folder
writer = subprocess.Popen([sys.executable, '-c', WRITER, str(run_dir)])""",
    """from PIL import Image
from sfda_nb import train
from sfda_nb.core import frozen_config
folder = Path(tempfile.mkdtemp()) / 'my_images'; folder.mkdir()
g = np.random.default_rng(0)
for i in range(6): Image.fromarray(g.integers(0, 255, (40, 72, 3), dtype=np.uint8)).save(folder / f'cam_{i}.png')
torch.manual_seed(0)
models.save_model(folder.parent / 'src.pt', models.build_model('small', 19), {'note': 'seeded init'}, protocol='cs19')
frun = Path(tempfile.mkdtemp()) / 'folder_run'
train.run(frozen_config(train.TrainConfig, dict(target=f'folder:{folder}', source_ckpt=str(folder.parent / 'src.pt'), iters=2,
          batch_size=2, crop=(32, 32), eval_every=0, metric_warmup=1, n_per_class=16, threads=1, out_dir=str(frun))))
folder_explorer = ReliabilityExplorer.from_run(frun)
folder_explorer""",
    """print('CELLS' + '_DONE')""",
]

def make_notebook(path: Path):
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'id': f'c{i}', 'metadata': {}, 'outputs': [],
                     'source': src} for i, src in enumerate(CELLS)],
          'metadata': {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
                       'language_info': {'name': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))


class JupyterLab:
    "JupyterLab on 127.0.0.1:<free port> with a known token, isolated config; killed (with its kernels) on exit."
    def __init__(self, root: Path, tmp: Path):
        self.port, self.token = free_port(), 'sfda-browser-test'
        env = {k: v for k, v in os.environ.items() if k not in ('CI', 'IN_TEST', 'PAPERMILL', 'SFDA_NO_LIVE')}  # a user's lab
        env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1')
        for k, sub in (('JUPYTER_CONFIG_DIR', 'cfg'), ('JUPYTER_DATA_DIR', 'data'), ('JUPYTER_RUNTIME_DIR', 'rt'),
                       ('JUPYTERLAB_SETTINGS_DIR', 'settings'), ('JUPYTERLAB_WORKSPACES_DIR', 'ws'), ('IPYTHONDIR', 'ipy')):
            env[k] = str(tmp/sub)
        settings = tmp/'settings'/'@jupyterlab'/'apputils-extension'
        settings.mkdir(parents=True, exist_ok=True)  # no news / update checks: nothing leaves the machine
        (settings/'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
        self.log = open(tmp/'jupyterlab.log', 'w')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.open_browser=False', '--ip=127.0.0.1',
             f'--port={self.port}', '--allow-root', f'--IdentityProvider.token={self.token}',
             f'--ServerApp.root_dir={root}', '--LabApp.expose_app_in_browser=True', '--ServerApp.port_retries=0'],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.tmp = tmp

    def url(self, path): return f'http://127.0.0.1:{self.port}/{path}?token={self.token}'

    def wait_ready(self, timeout=90):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None: break
            try:
                with urllib.request.urlopen(self.url('api/status'), timeout=2) as r:
                    if r.status == 200: return
            except OSError: time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not start on port {self.port}:\n{(self.tmp/'jupyterlab.log').read_text()[-3000:]}")

    def stop(self):
        "SIGTERM the server's process group (server and kernels), then SIGKILL what is left."
        if self.proc.poll() is None:
            try: os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError: pass
            try: self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired: pass
        try: os.killpg(self.proc.pid, signal.SIGKILL)  # kernels the server may have left behind
        except (ProcessLookupError, PermissionError): pass
        self.proc.wait(timeout=10)
        self.log.close()

    def __enter__(self): return self
    def __exit__(self, *exc): self.stop()


KERNEL_IDLE = """() => { const w = window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle'; }"""
STARTED = "() => [...document.querySelectorAll('.jp-InputPrompt')].some(p => /\\[(\\*|[0-9]+)\\]/.test(p.innerText))"

def run_all(page, tries=3):
    "Run every cell once the notebook is the current widget and its kernel is idle; re-issue if no cell started."
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    for i in range(tries):
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return 1; }")  # don't await it
        try: return page.wait_for_function(STARTED, timeout=30_000)
        except sync_api.TimeoutError:
            if i == tries - 1: raise


def test_explorer_and_live_view_render_in_jupyterlab(tmp_path):
    nbdir = tmp_path/'nbs'; nbdir.mkdir()
    make_notebook(nbdir/'viz_check.ipynb')
    shot = tmp_path/'viz_browser.png'
    with JupyterLab(nbdir, tmp_path) as lab:
        lab.wait_ready()
        with sync_api.sync_playwright() as pw:
            browser = launch(pw)
            try:
                page = browser.new_page(viewport={'width': 1500, 'height': 1900})
                offline(page, f'http://127.0.0.1:{lab.port}/')
                page.goto(lab.url('lab/tree/viz_check.ipynb'), timeout=90_000)
                page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell')", timeout=90_000)
                accept_kernel_dialog(page)
                run_all(page)
                page.get_by_text('CELLS_DONE', exact=True).wait_for(timeout=150_000)
                assert page.get_by_text('LIVE True', exact=True).count() == 1  # LiveView detected the frontend
                # the explorer: controls, the summary line and the matplotlib figure inside its Output widget
                page.wait_for_selector('.widget-output img', timeout=60_000)
                summary = page.locator('.sfda-explorer-summary').first
                summary.wait_for(timeout=30_000)
                before = summary.inner_text()
                assert 'confidence ≥ 0.5000 discards' in before
                assert page.locator('.widget-slider').count() >= 2 and page.locator('.widget-dropdown').count() >= 2
                img_w = page.evaluate("() => document.querySelector('.widget-output img').naturalWidth")
                assert img_w > 300, f'the explorer figure did not load (naturalWidth {img_w})'
                # the live view: a plotly FigureWidget (anywidget) with its traces drawn
                page.wait_for_selector('.js-plotly-plot .scatterlayer .trace', timeout=60_000)
                assert page.locator('.js-plotly-plot .scatterlayer .trace').count() >= 6
                # its layout: it uses the cell's width, and its five panel titles do not run into each other
                cell_w = page.evaluate("() => document.querySelector('.jp-Cell .jp-OutputArea').getBoundingClientRect().width")
                fig_w = page.evaluate("() => document.querySelector('.js-plotly-plot').getBoundingClientRect().width")
                assert fig_w >= 0.9 * cell_w - 40, (fig_w, cell_w)
                boxes = page.evaluate("() => [...document.querySelector('.js-plotly-plot').querySelectorAll('.annotation-text')]"
                                      ".map(t => {const r = t.getBoundingClientRect(); return [r.left, r.right]})")
                boxes = sorted(boxes)
                assert len(boxes) == 5 and all(a[1] <= b[0] for a, b in zip(boxes, boxes[1:])), boxes
                # the followed run: a second live figure, filled while the writer process appends, then finished
                page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                                       ".some(t => t.textContent.includes('cli_run: student step 80 (finished)'))", timeout=60_000)
                assert page.locator('.js-plotly-plot').count() == 2
                assert page.locator('.js-plotly-plot').nth(1).locator('.scatterlayer .trace .point').count() >= 8
                # a user moves the threshold: type into the slider's readout; the kernel re-renders
                readout = page.locator('.widget-slider').filter(has_text='confidence threshold').first.locator('.widget-readout')
                readout.click(); page.keyboard.press('Control+A'); page.keyboard.type('0.968'); page.keyboard.press('Enter')
                page.wait_for_function("() => document.querySelector('.sfda-explorer-summary').innerText.includes('confidence ≥ 0.9680')",
                                       timeout=60_000)
                assert readout.inner_text().strip() == '0.9680'  # exactly DACS's threshold, shown with 4 decimals
                page.wait_for_selector('.widget-output img', timeout=30_000)
                after = summary.inner_text()
                assert after.split('discards ')[1].split('%')[0] != before.split('discards ')[1].split('%')[0], (before, after)
                # the size control: a wider figure
                w0 = page.evaluate("() => document.querySelector('.widget-output img').naturalWidth")
                page.locator('.widget-dropdown').filter(has_text='width').first.locator('select').select_option(label='1800 px')
                page.wait_for_function(f"() => (document.querySelector('.widget-output img') || {{}}).naturalWidth > {w0 + 300}",
                                       timeout=60_000)
                # focus mode and one panel alone (a zoom): the summary names the class; the panel fills the chosen width
                page.locator('.widget-dropdown').filter(has_text='focus class').first.locator('select').select_option(label='sky')
                page.wait_for_function("() => document.querySelector('.sfda-explorer-summary').innerText.includes('pseudo-labelled sky')",
                                       timeout=60_000)
                page.locator('.widget-dropdown').filter(has_text='panel').first.locator('select').select_option(label='reliability')
                page.wait_for_function("() => (document.querySelector('.widget-output img') || {}).naturalHeight < 1400 && "
                                       "document.querySelector('.widget-output img').naturalWidth >= 1700", timeout=60_000)
                # the folder run: the resize said when it started, its explorer drawn at the images' own size
                body = page.inner_text('body')
                assert '6 images, all 72×40: used at their own size' in body, body[-3000:]
                assert page.locator('.sfda-explorer-summary').count() == 2
                assert page.locator('.sfda-explorer-summary').nth(1).inner_text().startswith('cam_')
                assert page.evaluate("() => document.querySelectorAll('.widget-output img')[1].naturalWidth") >= 1200
                assert 'Error displaying widget' not in body
                assert 'Traceback' not in body, body[body.find('Traceback') - 200:][:2000]
                page.wait_for_timeout(500)
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    assert shot.stat().st_size > 20_000
    shutil.copy(shot, '/tmp/viz_browser.png')


@pytest.mark.slow
def test_docs_page_renders_offline(tmp_path):
    out = tmp_path/'html'
    r = subprocess.run(['bash', str(ROOT/'tools'/'build_docs.sh'), '06_viz'], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, 'DOCS_OUT': str(out), 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, f"build_docs.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    log = r.stdout + r.stderr
    for bad in ('Quarto is not installed', 'sudo', 'Cancelled'):
        assert bad not in log, f'{bad!r} in the output of build_docs.sh'
    page_html = (out/'viz.html').read_text()
    assert 'Plotly.newPlot' in page_html and (out/'plotly.min.js').exists()  # plotly figures stay interactive, offline
    assert len(page_html) < 4_000_000  # plotly.js is loaded from its one local copy, not inlined in the page
    index = (out/'index.html').read_text()
    assert 'href="viz.html"' in index
    assert page_html.count('data:image/png;base64') >= 5  # figures are inline
    for name in ('explorer_panels', 'ReliabilityExplorer', 'LiveView', 'reliability_diagram'):
        assert name in page_html, f'API docs for {name} missing'
    shot = tmp_path/'docs_viz.png'
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={'width': 1280, 'height': 1600})
            offline(page, 'file://')
            page.goto((out/'index.html').as_uri())
            page.click('a[href="viz.html"]')
            page.wait_for_load_state('load')
            assert page.locator('h1').first.inner_text().strip() == 'Visual workbench'
            assert page.locator('h3', has_text='explorer_panels').count() >= 1  # a show_doc heading
            page.wait_for_selector('.js-plotly-plot .main-svg', timeout=30_000)  # drawn by the local plotly.js
            assert page.locator('h2', has_text='street images').count() == 1
            widths = page.evaluate("() => [...document.images].map(i => i.naturalWidth)")
            assert len(widths) >= 5 and min(widths) > 0, f'images did not decode: {widths}'
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    shutil.copy(shot, '/tmp/docs_browser.png')
