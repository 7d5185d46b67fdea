"""Rewrite the papermill parameters cell of nbs/05_train.ipynb from `TrainConfig` (its one source of truth).

    .venv/bin/python tools/sync_params.py          # rewrite the cell
    .venv/bin/python tools/sync_params.py --check  # exit 1 if the cell differs
"""
import json, sys
from pathlib import Path
from sfda_nb.train import parameters_cell

NB = Path(__file__).resolve().parents[1]/'nbs'/'05_train.ipynb'

def main(check=False) -> int:
    nb = json.loads(NB.read_text())
    cells = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
    if len(cells) != 1: sys.exit(f"{NB} must have exactly one cell tagged 'parameters' (found {len(cells)})")
    want = parameters_cell()
    if ''.join(cells[0]['source']) == want: return 0
    if check: print(f"the parameters cell of {NB} differs from TrainConfig: run tools/sync_params.py"); return 1
    cells[0]['source'] = want.splitlines(True)
    tmp = NB.with_suffix('.tmp'); tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n'); tmp.replace(NB)
    print(f"rewrote the parameters cell of {NB}"); return 0

if __name__ == '__main__': sys.exit(main('--check' in sys.argv[1:]))
