import os, sys, tempfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# Tests leave the project clean: the rendered benchmark and the cached source models go to one temporary
# root per test session (shared by every test and every notebook run from it), unless SFDA_TEST_CACHE names
# a folder to keep them in across sessions (a developer's cache, chosen on purpose).
_BASE = Path(os.environ['SFDA_TEST_CACHE']) if os.environ.get('SFDA_TEST_CACHE') else Path(tempfile.mkdtemp(prefix='sfda_test_'))
os.environ['SFDA_DATA'], os.environ['SFDA_RUNS'] = str(_BASE/'data'), str(_BASE/'runs')
# One CPU thread per test process and per process it starts (notebooks, papermill kernels, torchrun ranks), and
# OpenMP threads that sleep rather than spin while they wait: on a shared machine spinning threads fight for cores.
for _k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ[_k] = '1'
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

@pytest.fixture
def one_thread(monkeypatch):
    "Processes spawned by a test compete for 2 cores: pin them to one thread each."
    for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): monkeypatch.setenv(k, '1')
