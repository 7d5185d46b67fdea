"The library's layering: no import cycle, no lazy imports in the model chapters, no dataset name matched outside data."
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = {p.stem: p for p in (ROOT/'sfda_nb').glob('*.py') if p.stem not in ('__init__', '_modidx')}


def _imports(path):
    "(module imported, lazily?) for every import of an sfda_nb module in `path`."
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: names = [node.module.split('.')[0]] if node.module else [a.name for a in node.names]
            elif node.module == 'sfda_nb': names = [a.name for a in node.names]
            elif (node.module or '').startswith('sfda_nb.'): names = [node.module.split('.')[1]]
        elif isinstance(node, ast.Import): names = [a.name.split('.')[1] for a in node.names if a.name.startswith('sfda_nb.')]
        out += [(n, node.col_offset > 0) for n in names if n in LIB]
    return out


def test_no_import_cycle():
    graph = {m: {n for n, _ in _imports(p) if n != m} for m, p in LIB.items()}
    def cycle_from(start, node, path):
        for n in graph[node]:
            if n == start: return path + [n]
            if n not in path and (c := cycle_from(start, n, path + [n])): return c
    cycles = [c for m in graph if (c := cycle_from(m, m, [m]))]
    assert not cycles, cycles


def test_model_chapters_import_at_the_top():
    for m in ('models', 'mean_teacher', 'evaluation', 'source_models', 'pretrain'):
        lazy = [n for n, is_lazy in _imports(LIB[m]) if is_lazy]
        assert not lazy, f"{m} imports {lazy} inside a function"


def test_no_dataset_or_protocol_name_compared_outside_data():
    from sfda_nb.data import DATASETS, PROTOCOLS
    names = set(DATASETS) | set(PROTOCOLS)
    found = []
    for m, p in LIB.items():
        if m == 'data': continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators] for c in ([c] if not isinstance(c, (ast.Tuple, ast.List, ast.Set))
                                                                            else c.elts)]
                hits = [c.value for c in consts if isinstance(c, ast.Constant) and c.value in names]
                if hits: found.append(f"{m}.py:{node.lineno}: {hits}")
    assert not found, found
