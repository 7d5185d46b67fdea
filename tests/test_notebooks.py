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
