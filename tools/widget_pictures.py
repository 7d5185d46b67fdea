"""The README's pictures of the widgets, drawn by the widgets' own code from a committed run.

    .venv/bin/python tools/widget_pictures.py [--run results/widgets/stvm-metric-mocm-s0] [--out results/widgets] [--image 0]

`--run` is a finished `train.run` folder (the committed one: STvM, seed 0, of the embedded GTA5 -> Cityscapes sweep, with
its teacher, student and metric network, log.jsonl and metrics.json). The explorer's figures are the matplotlib figures
`ReliabilityExplorer.render` shows (saved as they are drawn); the live view's figure is the plotly figure
`LiveView.follow(...).figure()` holds, drawn by plotly.js in headless Chromium (Debian's /usr/bin/chromium, driven by
playwright) and saved as a screenshot. Writes explorer_grid.png, explorer_focus.png, explorer_zoom.png, live_view.png and
pictures.json (what was drawn, with which settings).
"""
import argparse, json, os, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']


def explorer_pictures(run: Path, out: Path, image: int, focus: str) -> dict:
    from sfda_nb import synth, viz
    synth.ensure_benchmark()  # the committed run's target is the embedded benchmark: rendered here if it is not yet
    ex = viz.ReliabilityExplorer.from_run(run, index=image, device='cpu')
    shots = {}
    ex.render().savefig(out/'explorer_grid.png', dpi=100); shots['explorer_grid.png'] = 'the 3x3 grid, all classes, threshold 0.968'
    ex.focus.value = ex.class_names.index(focus)
    ex.render().savefig(out/'explorer_focus.png', dpi=100); shots['explorer_focus.png'] = f'focus class {focus}'
    ex.zoom.value = 'reliability'
    ex.render().savefig(out/'explorer_zoom.png', dpi=100); shots['explorer_zoom.png'] = f'the reliability panel alone, focus class {focus}'
    return {'summary': ex.summary(), 'image': ex.current().name, 'files': shots}


def live_picture(run: Path, out: Path) -> dict:
    from sfda_nb import viz
    from playwright.sync_api import sync_playwright
    view = viz.LiveView.follow(run, live=False, background=False)  # the finished run, read in one go
    fig = view.figure()
    fig.update_layout(width=1300, height=420)
    with tempfile.TemporaryDirectory() as d:
        page_file = Path(d)/'live.html'
        fig.write_html(page_file, include_plotlyjs=True, full_html=True)  # plotly.js inlined: no network
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={'width': 1340, 'height': 460})
                page.goto(page_file.as_uri())
                page.wait_for_selector('.js-plotly-plot .scatterlayer .trace')
                page.locator('.js-plotly-plot').screenshot(path=str(out/'live_view.png'))
            finally: browser.close()
    return {'title': fig.layout.title.text, 'files': {'live_view.png': 'LiveView.follow(run).figure(), drawn by plotly.js in Chromium'}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--run', default=str(ROOT/'results'/'widgets'/'stvm-metric-mocm-s0')); p.add_argument('--out', default=str(ROOT/'results'/'widgets'))
    p.add_argument('--image', type=int, default=0); p.add_argument('--focus', default='car')
    a = p.parse_args()
    run, out = Path(a.run), Path(a.out)
    if not (run/'metrics.json').is_file(): sys.exit(f"{run} holds no finished run (metrics.json); pass --run")
    if not CHROMIUM.exists(): sys.exit(f"{CHROMIUM} is missing: apt-get install -y chromium (the live view is drawn by plotly.js in it)")
    out.mkdir(parents=True, exist_ok=True)
    m = json.loads((run/'metrics.json').read_text())
    rec = {'run': os.path.relpath(run, ROOT), 'method': m['method'], 'seed': m['seed'], 'source': m['config']['source'],
           'target': m['config']['target'], 'iters': m['config']['iters'], 'miou': m['miou'],
           'explorer': explorer_pictures(run, out, a.image, a.focus), 'live_view': live_picture(run, out),
           'command': 'python tools/widget_pictures.py' + ''.join(f' {k} {v}' for k, v in (('--image', a.image), ('--focus', a.focus)))}
    tmp = out/'pictures.json.tmp'; tmp.write_text(json.dumps(rec, indent=1)); os.replace(tmp, out/'pictures.json')
    print(json.dumps(rec, indent=1))


if __name__ == '__main__': main()
