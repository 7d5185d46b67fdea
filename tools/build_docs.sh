#!/usr/bin/env bash
# Build sfda_nb's documentation as an offline HTML site: one page per notebook, an index linking them,
# nbdev's API docs (show_doc) and every figure inline. No Quarto, no network.
#
#   tools/build_docs.sh                 every chapter in nbs/  ->  _docs/html/index.html
#   tools/build_docs.sh 00_core 06_viz  only these chapters (the index lists every page built so far)
#
# Steps:
#   1. `nbdev-proc-nbs`: nbdev's own processing of the notebooks into _proc/ (what `nbdev-docs` renders
#      where Quarto is installed; all of them unless chapters are named). It must succeed: it runs each
#      notebook's exported cells and every cell with an import, even one flagged slow.
#   2. Execute each chosen notebook as nbdev-test does (cells flagged slow/gpu skipped, IN_TEST=1) into
#      _docs/exec/, so its figures exist. A copy newer than the notebook and the library is reused.
#   3. Run nbdev's doc processors (a show_doc entry for every export, directives) on the executed copy.
#   4. Convert to HTML with nbconvert's lab template; remote scripts are dropped, images are inline, and plotly
#      figures stay interactive (plotly's HTML, with one local copy of plotly.min.js next to the pages).
# Quarto is never needed, and never installed: without it, step 1 skips nbdev's Quarto check (whose installer
# would call sudo and a download).
#
# Environment: DOCS_OUT (output folder, default _docs/html), DOCS_FLAGS (flags to run as well, e.g. "slow"),
# DOCS_TIMEOUT (seconds per cell, default 600), DOCS_EXEC=0 (do not execute: API docs and prose only),
# DOCS_PROC_ONLY=1 (only step 1: the check CI and the tests run, that nbdev's processing succeeds on every notebook).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# nbdev-proc-nbs, minus its Quarto check: without Quarto on the PATH, nbdev's `_ensure_quarto` runs Quarto's installer
# (sudo, a download), which cannot work here and prints "Quarto is not installed ... Cancelled" and "sudo: not found".
# These docs never need Quarto, so the check is skipped when Quarto is absent; where it is installed nothing changes.
proc_nbs() {  # $1: a --file-re regex, or empty for every notebook (-c, not stdin: nbdev's worker processes re-import __main__)
  "$PY" -c "import shutil, sys
import nbdev.quarto as q
if not shutil.which('quarto'): q._ensure_quarto = lambda: None
q.nbdev_proc_nbs.__wrapped__(**({'file_re': sys.argv[1]} if sys.argv[1] else {}))" "$1"
}
if [ $# -eq 0 ]; then
  echo "== nbdev-proc-nbs (every notebook)"
  proc_nbs ""
else  # only the chosen chapters, e.g. 06_viz -> '^(06_viz)\.ipynb$'
  re="^($(printf '%s|' "${@%.ipynb}" | sed 's/|$//'))\.ipynb\$"
  echo "== nbdev-proc-nbs --file-re '$re'"
  proc_nbs "$re"
fi
if [ "${DOCS_PROC_ONLY:-0}" = 1 ]; then echo "== nbdev-proc-nbs done (DOCS_PROC_ONLY=1)"; exit 0; fi

echo "== offline HTML"
exec "$PY" - "$@" <<'PYEOF'
import html, json, os, re, shutil, subprocess, sys
from pathlib import Path
import nbformat, yaml
from nbconvert import HTMLExporter
from nbconvert.filters import markdown2html
from traitlets.config import Config

ROOT = Path.cwd()
OUT = Path(os.environ.get('DOCS_OUT') or ROOT/'_docs'/'html')
EXEC, PROC = ROOT/'_docs'/'exec', ROOT/'_docs'/'proc'
FLAGS = os.environ.get('DOCS_FLAGS', '').split()
TIMEOUT = int(os.environ.get('DOCS_TIMEOUT', '600'))
RUN = os.environ.get('DOCS_EXEC', '1') != '0'
for d in (OUT, EXEC, PROC): d.mkdir(parents=True, exist_ok=True)

ALL = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))
by_stem = {p.stem: p for p in ALL}
wanted = [w.removesuffix('.ipynb') for w in sys.argv[1:]]
missing = [w for w in wanted if w not in by_stem]
if missing: sys.exit(f"build_docs.sh: no notebook {missing} in nbs/; the chapters are {sorted(by_stem)}")
chosen = [by_stem[w] for w in wanted] if wanted else ALL

def frontmatter(nb) -> dict:
    "The YAML front matter nbdev puts in a processed notebook's first raw cell."
    for c in nb.cells:
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            return yaml.safe_load(c.source.strip().strip('-')) or {}
    return {}

def page_name(stem) -> str:
    "The page's file name: nbdev's `output-file` (the module name for a chapter with default_exp)."
    proc = ROOT/'_proc'/f'{stem}.ipynb'
    if proc.exists(): return frontmatter(nbformat.read(proc, as_version=4)).get('output-file', f'{stem}.html')
    return f'{stem}.html'
PAGES = {stem: page_name(stem) for stem in by_stem}
PAGES = {k: ('home.html' if v == 'index.html' else v) for k, v in PAGES.items()}  # index.html is the site's index

def lib_mtime():
    mods = [p for p in (ROOT/'sfda_nb').glob('*.py') if p.name != '_modidx.py']  # nbdev-proc-nbs rewrites _modidx.py
    return max([p.stat().st_mtime for p in mods] + [(ROOT/'pyproject.toml').stat().st_mtime])

def execute(nb_path: Path) -> Path:
    "An executed copy of the notebook (nbdev-test's rules); one newer than notebook and library is reused."
    dst = EXEC/(nb_path.stem + ''.join(f'+{f}' for f in sorted(FLAGS)) + '.ipynb')  # a copy per set of flags
    if not RUN:
        shutil.copy(nb_path, dst); return dst
    if dst.exists() and dst.stat().st_mtime > max(nb_path.stat().st_mtime, lib_mtime()):
        print(f'   {nb_path.name}: reusing {dst.relative_to(ROOT)}'); return dst
    tmp = EXEC/f'_run_{nb_path.name}'
    shutil.copy(nb_path, tmp)
    code = ("import sys; from nbdev.test import test_nb; "
            f"ok, t = test_nb({str(tmp)!r}, skip_flags=['slow', 'gpu'], force_flags={FLAGS!r}, save=True, cell_timeout={TIMEOUT}); "
            f"print(f'   {nb_path.name}: executed in {{t:.0f}} s'); sys.exit(0 if ok else 1)")
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT/'nbs')
    if r.returncode: tmp.unlink(missing_ok=True); sys.exit(f"build_docs.sh: {nb_path} failed to execute (error above)")
    tmp.replace(dst)
    return dst

def process(executed: Path) -> Path:
    "nbdev's doc processors (show_doc for exports, directives, hidden cells) applied to the executed copy."
    dst = PROC/executed.name
    code = ("from pathlib import Path; from nbdev.serve_drv import exec_nb; from nbdev.processors import FilterDefaults; "
            f"exec_nb(Path({str(executed)!r}), Path({str(dst)!r}), FilterDefaults)")
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env={**os.environ, 'IN_TEST': '1'})
    if r.returncode: sys.exit(f"build_docs.sh: nbdev's doc processing of {executed} failed (error above)")
    return dst

DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
WIDGET_NOTE = ('<p class="sfda-widget-note"><em>An interactive widget was shown here. Open the notebook in '
               'JupyterLab to use it.</em></p>')

def split_directives(src: str):
    lines, dirs = src.splitlines(), {}
    while lines and (m := DIRECTIVE.match(lines[0])): dirs[m[1]] = m[2].lower(); lines.pop(0)
    return dirs, '\n'.join(lines).strip('\n')

def link_pages(md: str) -> str:
    "Links to sibling notebooks point at their pages."
    return re.sub(r'\]\((?:\./)?(\w+)\.ipynb(#[^)]*)?\)', lambda m: f']({PAGES.get(m[1], m[1] + ".html")}{m[2] or ""})', md)

PLOTLY_MIME, PLOTLY_JS = 'application/vnd.plotly.v1+json', 'plotly.min.js'  # plotly.js: one local copy next to the pages

def plotly_html(fig: dict) -> str:
    "A plotly figure as an interactive HTML snippet; plotly.js comes from the page's local copy (see `with_plotly`)."
    import plotly.io as pio
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, config={'displaylogo': False, 'responsive': True})

def with_plotly(body: str) -> str:
    "Load the local plotly.js in the page's head (copied into the output folder once) when the page has a plotly figure."
    if 'Plotly.newPlot' not in body: return body
    import plotly
    if not (OUT/PLOTLY_JS).exists(): shutil.copy(Path(plotly.__file__).parent/'package_data'/PLOTLY_JS, OUT/PLOTLY_JS)
    return body.replace('</head>', f'<script src="{PLOTLY_JS}" charset="utf-8"></script>\n</head>', 1)

def clean_outputs(outs):
    "Outputs for a page: no stderr; plotly figures stay interactive (HTML); a widget becomes a note (its state is not saved)."
    res = []
    for o in outs:
        if o.output_type == 'stream' and o.name == 'stderr': continue  # progress bars and warnings
        data = o.get('data', {})
        if set(data) == {'text/html'} and 'window.PlotlyConfig' in ''.join(data['text/html']): continue  # plotly.js, inlined by
        if PLOTLY_MIME in data:                                        # plotly's 'notebook' renderer: the page loads its own copy
            o = nbformat.v4.new_output('display_data', data={'text/html': plotly_html(data[PLOTLY_MIME])})
        elif 'application/vnd.jupyter.widget-view+json' in data:
            o = nbformat.v4.new_output('display_data', data={'text/html': WIDGET_NOTE})
        res.append(o)
    return res

def static_notebook(nb):
    "Directives applied (echo, include, output), show_doc output as markdown, widgets replaced by a note."
    fm = frontmatter(nb)
    head = f"# {fm.get('title', '')}\n\n" + (f"> {fm['description']}\n" if fm.get('description') else '')
    cells = [nbformat.v4.new_markdown_cell(head)]
    for c in nb.cells:
        if c.cell_type == 'raw': continue
        if c.cell_type == 'markdown':
            src = c.source.replace('<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->', '').strip()
            if src: cells.append(nbformat.v4.new_markdown_cell(link_pages(src)))
            continue
        dirs, src = split_directives(c.source)
        if dirs.get('include') == 'false': continue
        outs = [] if dirs.get('output') == 'false' else clean_outputs(c.get('outputs', []))
        if dirs.get('echo') == 'false':
            md = [''.join(o['data']['text/markdown']) for o in outs if 'text/markdown' in o.get('data', {})]
            if md and dirs.get('output') == 'asis':  # show_doc: its markdown becomes part of the page
                cells.append(nbformat.v4.new_markdown_cell('\n'.join(md).strip()))
                continue
            src = ''
        if not src and not outs: continue
        new = nbformat.v4.new_code_cell(src, outputs=outs)
        if not src: new.metadata['tags'] = ['remove_input']
        cells.append(new)
    out = nbformat.v4.new_notebook(cells=cells, metadata={k: v for k, v in nb.metadata.items() if k != 'widgets'})
    return out, fm

CSS = """<style>
body { max-width: 1120px; margin: 0 auto; padding: 0 1.2em 4em; }
nav.sfda-nav { position: sticky; top: 0; z-index: 10; background: #fff; border-bottom: 1px solid #ddd; padding: .5em 0; margin-bottom: .8em; font: 14px sans-serif; }
nav.sfda-nav a { margin-right: 1.2em; }
.jp-RenderedMarkdown h3 code, .jp-RenderedHTMLCommon h3 code { font-size: 0.95em; }
</style>"""

def nav(i, pages):
    links = ['<a href="index.html">sfda_nb docs</a>']
    if i > 0: links.append(f'<a href="{pages[i - 1][1]}">← {html.escape(pages[i - 1][2])}</a>')
    if i < len(pages) - 1: links.append(f'<a href="{pages[i + 1][1]}">{html.escape(pages[i + 1][2])} →</a>')
    return f'<nav class="sfda-nav">{"".join(links)}</nav>'

def offline_html(body: str) -> str:
    "Drop every <script> that loads from the network (require.js, MathJax, mermaid from CDNs)."
    body = re.sub(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', '', body)
    return re.sub(r'<script type="module">(?:(?!</script>).)*?https?://.*?</script>', '', body, flags=re.S)

cfg = Config()
cfg.TagRemovePreprocessor.enabled = True
cfg.TagRemovePreprocessor.remove_input_tags = {'remove_input'}
cfg.HTMLExporter.preprocessors = ['nbconvert.preprocessors.TagRemovePreprocessor']
exporter = HTMLExporter(config=cfg, template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)

manifest_f = OUT/'manifest.json'
manifest = json.loads(manifest_f.read_text()) if manifest_f.exists() else {}
built = {}
for nb_path in chosen:
    print(f'-- {nb_path.name}')
    proc = process(execute(nb_path))
    nb, fm = static_notebook(nbformat.read(proc, as_version=4))
    built[nb_path.stem] = (nb, fm)
    manifest[nb_path.stem] = {'file': PAGES[nb_path.stem], 'title': fm.get('title', nb_path.stem), 'description': fm.get('description', '')}
manifest = {k: manifest[k] for k in sorted(manifest, key=lambda k: (k != 'index', k)) if k in by_stem}  # nbs/index first
pages = [(k, v['file'], v['title']) for k, v in manifest.items()]
for stem, (nb, fm) in built.items():
    body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': fm.get('title', stem)}})
    i = [p[0] for p in pages].index(stem)
    body = with_plotly(offline_html(body).replace('</head>', CSS + '\n</head>', 1))
    body = re.sub(r'(<body[^>]*>)', lambda m: m[1] + nav(i, pages), body, count=1)
    (OUT/manifest[stem]['file']).write_text(body)
    print(f'   wrote {(OUT/manifest[stem]["file"]).relative_to(ROOT) if OUT.is_relative_to(ROOT) else OUT/manifest[stem]["file"]}')
manifest_f.write_text(json.dumps(manifest, indent=1))

readme = (ROOT/'README.md').read_text() if (ROOT/'README.md').exists() else ''
items = ''.join(f'<li><a href="{v["file"]}">{html.escape(k)}: {html.escape(v["title"])}</a>'
                f'<div class="desc">{html.escape(v["description"])}</div></li>' for k, v in manifest.items())
index = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sfda_nb documentation</title>
<style>body {{ font: 16px/1.5 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 960px; margin: 2em auto; padding: 0 1.2em; color: #222; }}
li {{ margin: .6em 0; }} .desc {{ color: #555; font-size: .92em; }} pre, code {{ background: #f5f5f5; }} pre {{ padding: .6em; overflow-x: auto; }}
h2 {{ border-bottom: 1px solid #ddd; }} a.anchor-link {{ display: none; }}</style></head>
<body><h1>sfda_nb documentation</h1>
<p>One page per notebook chapter, with its API reference and figures. Built offline by <code>tools/build_docs.sh</code>
from the notebooks in <code>nbs/</code>.</p>
<h2>Chapters</h2><ul>{items}</ul>
{'' if 'index' in manifest else '<h2>README</h2>' + markdown2html(readme)}
</body></html>"""
(OUT/'index.html').write_text(index)
print(f'== docs: {OUT/"index.html"} ({len(manifest)} pages)')
PYEOF
