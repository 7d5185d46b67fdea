"""Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which this machine cannot install).

Markdown cells are copied; code cells become fenced Python blocks; a cell whose first line is
`#| hide` is left out. `--check` exits 1 when README.md differs from what would be written.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip('\n')
        if not src or src.startswith('#| hide') or src.startswith('#|hide'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f"```python\n{src}\n```")
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if readme.read_text() != text: sys.exit("README.md is out of date: run `.venv/bin/python tools/make_readme.py`")
    else: readme.write_text(text)
