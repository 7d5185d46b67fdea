"""Every chapter notebook runs under nbdev-test (slow/gpu cells skipped), one pytest case each."""
import os, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT, VENV_BIN

NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    r = subprocess.run([str(VENV_BIN/'nbdev-test'), str(nb)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{nb.name} failed under nbdev-test:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook_is_clean(nb):
    "Committed notebooks carry no outputs or widget state (MBs), and name a kernel so papermill can run them."
    import json
    d = json.loads(nb.read_text())
    assert d['metadata'].get('kernelspec', {}).get('name') == 'python3'
    assert 'widgets' not in d['metadata']
    assert not any(c.get('outputs') for c in d['cells']), f"{nb.name} has outputs"

def test_train_parameters_tagged():
    import json
    d = json.loads((ROOT/'nbs'/'05_train.ipynb').read_text())
    assert sum('parameters' in c['metadata'].get('tags', []) for c in d['cells']) == 1


def test_library_statements_stand_on_their_own_lines():
    "No statement of the library is joined to another with `;` (tools/tidy_lines.py splits them in the notebooks)."
    import io, tokenize
    joined = [f"{f.name}:{t.start[0]}" for f in sorted((ROOT/'sfda_nb').glob('*.py')) if f.name != '_modidx.py'
              for t in tokenize.generate_tokens(io.StringIO(f.read_text()).readline) if t.type == tokenize.OP and t.string == ';']
    assert not joined, f"statements joined with ';' at {joined[:10]}: run tools/tidy_lines.py nbs/*.ipynb"
