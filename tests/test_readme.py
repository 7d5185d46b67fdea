"""README.md is generated from nbs/index.ipynb, and its two commands are the ones run.sh provides."""
import re, subprocess, sys
from conftest import ROOT

def test_readme_in_sync_with_index():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout

def test_readme_two_commands_exist_in_run_sh():
    readme = (ROOT/'README.md').read_text()
    cmds = re.findall(r'^\./run\.sh (\w+)', readme, flags=re.M)
    assert cmds[:2] == ['demo', 'test']
    run_sh = (ROOT/'run.sh').read_text()
    for c in cmds: assert f'\n  {c})' in run_sh, c

def test_readme_figures_come_from_result_files():
    "The README's measured figures are placeholders filled from committed results (tools/make_readme.py), never typed in."
    import json
    src = ''.join(''.join(c['source']) for c in json.loads((ROOT/'nbs'/'index.ipynb').read_text())['cells'])
    for key in ('results/demo.json:seconds.total', 'results/demo.json:miou.stvm', 'results/calibration/gta5_summary.json:oracle'):
        assert '{{' + key in src, key
    assert '{{' not in (ROOT/'README.md').read_text()

def test_the_project_cites_only_itself():
    "No notebook, module, README or committed result names a machine path (a checkout's or a temporary folder's)."
    pat = re.compile(r'''["'`(= ]/(?:tmp|work|root|home|check|Users)/''')
    files = [*(ROOT/'nbs').glob('*.ipynb'), *(ROOT/'sfda_nb').glob('*.py'), ROOT/'README.md', ROOT/'data'/'README.md',
             *(ROOT/'results').rglob('*.md')]
    hits = [f"{f.relative_to(ROOT)}: {m.group(0)}" for f in files for m in pat.finditer(f.read_text())]
    assert not hits, hits

def test_readme_pictures_exist_and_come_from_the_committed_run():
    "Every picture the README shows is committed; the widget pictures name the committed run they were drawn from."
    import json
    readme = (ROOT/'README.md').read_text()
    pics = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', readme)
    assert {'results/widgets/explorer_grid.png', 'results/widgets/explorer_focus.png', 'results/widgets/live_view.png'} <= set(pics)
    for p in pics: assert (ROOT/p).is_file() and (ROOT/p).stat().st_size > 10_000, p
    rec = json.loads((ROOT/'results'/'widgets'/'pictures.json').read_text())
    m = json.loads((ROOT/rec['run']/'metrics.json').read_text())
    assert (m['method'], m['seed'], m['miou']) == (rec['method'], rec['seed'], rec['miou'])
    assert all((ROOT/rec['run']/f).is_file() for f in ('teacher.pt', 'student.pt', 'metric.pt', 'log.jsonl'))


def test_own_images_section_says_which_source_model():
    "The own-images commands run as written: no `<source model>` placeholder; the text says what is used without one."
    readme = (ROOT/'README.md').read_text()
    sec = readme.split('## Adapt to your own images')[1].split('\n## ')[0]
    assert '<source model>' not in sec and 'demo --target folder:my_images' in sec
    assert 'Without `--source_ckpt`' in sec and 'runs/source_models/' in sec


def test_packaging_declares_the_weights_folder(tmp_path):
    "Building the package warns about nothing it should have declared (sfda_nb.weights, the committed backbone)."
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', str(ROOT), '--no-deps', '--no-build-isolation', '-w', str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert 'absent from the `packages` configuration' not in out, out[-3000:]
    import zipfile
    names = zipfile.ZipFile(next(tmp_path.glob('*.whl'))).namelist()
    assert 'sfda_nb/weights/small_backbone.pt' in names
