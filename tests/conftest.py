import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

@pytest.fixture
def one_thread(monkeypatch):
    "Processes spawned by a test compete for 2 cores: pin them to one thread each."
    for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): monkeypatch.setenv(k, '1')
