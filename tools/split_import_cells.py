"""Move top-level imports out of non-exported cells that also run other code.

nbdev-proc-nbs (docs) executes every cell that contains an import; a test or figure cell that
also imports would run (and may fail or take minutes) during the docs build. This tool puts the
cell's top-level imports into a cell of their own just before it, and lists cells that still
contain nested imports next to other code. Usage: python tools/split_import_cells.py nbs/X.ipynb ...
"""
import ast, json, sys, uuid

def split(path):
    nb = json.load(open(path)); out, flagged = [], []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] != 'code' or '#| export' in src or '#|export' in src:
            out.append(c); continue
        try: tree = ast.parse(src)
        except SyntaxError: out.append(c); continue
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        rest = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
        nested = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and n not in top]
        if top and rest:
            lines = src.splitlines(keepends=True)
            imp_lines = set()
            for n in top: imp_lines.update(range(n.lineno - 1, n.end_lineno))
            directives = [l for i, l in enumerate(lines) if l.startswith('#|') and i not in imp_lines]
            imp = ''.join(l for i, l in enumerate(lines) if i in imp_lines)
            body = ''.join(l for i, l in enumerate(lines) if i not in imp_lines)
            slow = [d for d in directives if 'slow' in d or 'gpu' in d]
            out.append({**c, 'id': uuid.uuid4().hex[:8], 'source': (''.join(slow) + imp).rstrip('\n').splitlines(keepends=True), 'outputs': [], 'metadata': {}})
            c = {**c, 'source': body.strip('\n').splitlines(keepends=True)}
        if nested and (rest if top else [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom))]):
            flagged.append(src[:120])
        out.append(c)
    nb['cells'] = out
    json.dump(nb, open(path, 'w'), indent=1, ensure_ascii=False)
    return flagged

if __name__ == '__main__':
    for p in sys.argv[1:]:
        for f in split(p): print(f"{p}: nested import beside other code:\n  {f!r}")
