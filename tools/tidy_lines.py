"""Readable library lines (issue 20 §6), in the notebooks' exported cells:

- statements joined with `;` go on lines of their own (a one-line `if x: a; b` becomes a block);
- a trailing comment that makes a line longer than 120 characters moves to its own line above the statement.

Every rewritten cell must parse to the same syntax tree as before (comments and layout are not in it), or it is left as
it was and named. Test cells are left alone (a one-line test may join statements), and so are comments inside brackets
(a parameter's documentation, which nbdev reads) and on annotated fields (a config's documented parameters).

    .venv/bin/python tools/tidy_lines.py [--check] nbs/*.ipynb
"""
import ast, io, json, sys, textwrap, tokenize
from pathlib import Path

WIDTH = 120
COMPOUND = ('if', 'elif', 'else', 'for', 'while', 'with', 'try', 'except', 'finally', 'def', 'class', 'async')


def _tokens(src):
    return list(tokenize.generate_tokens(io.StringIO(src).readline))


def _split_line(line:str) -> list:
    "One physical line holding one logical line -> the lines it becomes (itself when nothing is to do)."
    try: toks = [t for t in _tokens(line + '\n') if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER,
                                                                     tokenize.INDENT, tokenize.DEDENT)]
    except (tokenize.TokenError, IndentationError, SyntaxError): return [line]
    if not toks: return [line]
    indent = line[:len(line) - len(line.lstrip())]
    depth, semis, header_colon, comment = 0, [], None, None
    compound = toks[0].type == tokenize.NAME and toks[0].string in COMPOUND
    for t in toks:
        if t.type == tokenize.OP and t.string in '([{': depth += 1
        elif t.type == tokenize.OP and t.string in ')]}': depth -= 1
        elif t.type == tokenize.OP and t.string == ';' and depth == 0: semis.append(t)
        elif t.type == tokenize.OP and t.string == ':' and depth == 0 and compound and header_colon is None: header_colon = t
        elif t.type == tokenize.COMMENT: comment = t
    if comment is not None and depth != 0: return [line]
    code = line[:comment.start[1]].rstrip() if comment else line.rstrip()
    text = comment.string if comment else ''
    is_field = isinstance(_first_stmt(line.strip()), ast.AnnAssign)
    out = []
    if semis:
        cuts = [s.start[1] for s in semis]
        if compound and header_colon is not None and header_colon.start[1] < cuts[0]:
            head, body_start = code[:header_colon.start[1] + 1], header_colon.start[1] + 1
            parts = [p.strip() for p in _cut(code[body_start:], [c - body_start for c in cuts])]
            out = [head] + [indent + '    ' + p for p in parts if p]
        else:
            out = [indent + p.strip() for p in _cut(code, cuts) if p.strip()]
        if text:
            if len(out[0]) + 2 + len(text) <= WIDTH: out[0] = out[0] + '  ' + text
            else: out = _comment_lines(indent, text) + out
        return out
    if text and len(line) > WIDTH and not is_field:
        return _comment_lines(indent, text) + [code]
    return [line]


def _first_stmt(src):
    try: body = ast.parse(src).body
    except SyntaxError: return None
    return body[0] if body else None


def _cut(s:str, cuts:list) -> list:
    "`s` cut at the character positions `cuts` (each a `;`, dropped)."
    out, start = [], 0
    for c in cuts:
        out.append(s[start:c])
        start = c + 1
    out.append(s[start:])
    return out


def _comment_lines(indent:str, text:str) -> list:
    body = text.lstrip('#').strip()
    return [indent + '# ' + l for l in textwrap.wrap(body, WIDTH - len(indent) - 2)] or [indent + text]


def _logical_one_line(src:str) -> set:
    "Line numbers (1-based) of logical lines that fit on one physical line."
    ok, start = set(), None
    for t in _tokens(src):
        if start is None and t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            start = t.start[0]
        if t.type == tokenize.NEWLINE:
            if start == t.start[0]: ok.add(start)
            start = None
    return ok


def tidy(src:str) -> str:
    "The cell's source with its lines tidied; the same source when the tree would change."
    lines = src.split('\n')
    try: one = _logical_one_line(src + '\n')
    except (tokenize.TokenError, IndentationError, SyntaxError): return src
    out = []
    for i, line in enumerate(lines, 1):
        out += _split_line(line) if i in one and (';' in line or len(line) > WIDTH) else [line]
    new = '\n'.join(out)
    try:
        if ast.dump(ast.parse(src)) != ast.dump(ast.parse(new)): return src
    except SyntaxError: return src
    return new


def main(argv):
    check = '--check' in argv
    files = [a for a in argv if a != '--check']
    changed = 0
    for f in map(Path, files):
        nb = json.loads(f.read_text())
        dirty = False
        for c in nb['cells']:
            s = ''.join(c['source'])
            if c['cell_type'] != 'code' or not s.startswith('#| export'): continue
            new = tidy(s)
            if new != s:
                changed += 1
                dirty = True
                c['source'] = new.splitlines(True)
        if dirty and not check: f.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    print(f"{changed} cells {'would change' if check else 'changed'}")
    return 1 if check and changed else 0


if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
