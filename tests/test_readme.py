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
