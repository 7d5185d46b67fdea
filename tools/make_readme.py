"""Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which this machine cannot install).

Markdown cells are copied; code cells become fenced Python blocks; a cell whose first line is
`#| hide` is left out. Figures are never typed into the README: a placeholder
`{{results/<file>.json:<key.path>[:<format>]}}` is replaced by that value of the committed result file
(e.g. `{{results/demo.json:seconds.total:.0f}}`), so the text cannot go stale. `--check` exits 1 when
README.md differs from what would be written.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FIELD = re.compile(r'\{\{\s*([^:}\s]+\.json):([\w.\-/ ]+?)(?::([^}]*))?\s*\}\}')

def lookup(path:str, key:str):
    "The value at dotted `key` of the JSON file `path` (relative to the project root)."
    v = json.loads((ROOT/path).read_text())
    for k in key.split('.'): v = v[int(k)] if isinstance(v, list) else v[k]
    return v

def fill(text:str) -> str:
    "Replace every `{{file.json:key[:fmt]}}` placeholder by the committed value."
    def one(m):
        try: v = lookup(m.group(1), m.group(2))
        except (OSError, KeyError, IndexError, ValueError) as e: sys.exit(f"README placeholder {m.group(0)}: {type(e).__name__} {e}")
        return format(v, m.group(3) or '')
    return _FIELD.sub(one, text)

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip('\n')
        if not src or src.startswith('#| hide') or src.startswith('#|hide'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f"```python\n{src}\n```")
    return fill('\n\n'.join(parts) + '\n')

if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if readme.read_text() != text: sys.exit("README.md is out of date: run `.venv/bin/python tools/make_readme.py`")
    else: readme.write_text(text)
