"""Griffe extension for the API reference: convjax's docstrings, rendered as Markdown.

The docstrings are Google style and read well in a terminal, with a few reStructuredText
habits that Markdown would render badly. Before mkdocstrings renders a docstring, this
extension rewrites, in the text it renders only (the source is untouched):

- Sphinx roles (``:func:`~convjax.functional.conv```) -> inline code (`` `conv` ``);
- doctest runs (``>>>`` lines and their output) -> a fenced ``pycon`` block
  (Markdown would read ``>>>`` as nested quotes);
- ``Title::`` followed by an indented literal block -> ``Title:`` and a fenced block
  (``python`` when the block parses as Python, else ``text``);
- reST simple tables (``====  ====`` borders) -> Markdown tables;
- reST section underlines (``Title`` over ``-----``) -> a bold line, so a docstring adds no
  headings to the page's table of contents;
- an argument entry that documents several names at once (``rtol, atol: tolerances``, the
  list possibly wrapped over lines) -> one entry per name, as the Google parser expects; a
  line in an ``Args:`` section that documents no name (``Other arguments as max_pool.``)
  moves below the section;
- the first line of a ``Returns:`` section gets a leading ``: `` (an empty type), so that
  the Google parser does not take the text before a colon in it (``x.shape[:axis]``) for a
  type;
- ``#:`` comments above a module attribute -> that attribute's docstring (the Sphinx
  convention the code uses for constants such as ``ResNet18``); a module attribute that is a
  function made at import time (``conv2d = _ranked(2)``) gets the function's ``__doc__``,
  read by importing it.

mkdocs.yml loads it with ``extensions: [docs/griffe_convjax.py]``.
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
import types
from pathlib import Path

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const):`(~?)([^`]+)`")
_TABLE_BORDER = re.compile(r"^\s*=+(?: +=+)+\s*$")
_UNDERLINE = re.compile(r"^\s*(?:-{3,}|={3,})\s*$")
_RETURNS_TITLE = re.compile(r"^\s*(?:Returns|Yields):\s*$")
_ARGS_TITLE = re.compile(r"^\s*(?:Args|Arguments|Parameters|Attributes|Other Parameters):\s*$")
_NAMES = re.compile(r"^\s*(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*:(?:\s|$)")


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    if tilde:
        target = target.split(".")[-1]
    return f"`{target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fence(lines: list[str], indent: str, lang: str) -> list[str]:
    return [f"{indent}```{lang}", *lines, f"{indent}```"]


def _doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        ind = _indent(line)
        j = i
        while j < len(lines) and lines[j].strip() and _indent(lines[j]) >= ind:
            j += 1
        if out and out[-1].strip():
            out.append("")
        out += _fence(lines[i:j], " " * ind, "pycon")
        i = j
    return out


def _literal_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::") or line.strip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        ind = _indent(line)
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        k = j
        while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) > ind):
            k += 1
        while k > j and not lines[k - 1].strip():
            k -= 1
        if k == j:  # no indented block follows: leave the line alone
            out.append(line)
            i += 1
            continue
        head = line.rstrip()[:-2].rstrip()
        block = textwrap.dedent("\n".join(lines[j:k]))
        try:
            ast.parse(block)
            lang = "python"
        except SyntaxError:
            lang = "text"
        if head.strip():
            out.append(head + ":")
        out.append("")
        out += _fence([" " * ind + b if b else b for b in block.split("\n")], " " * ind, lang)
        if k < len(lines) and lines[k].strip():
            out.append("")
        i = k
    return out


def _table_rows(lines: list[str], spans: list[tuple[int, int]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        cells = []
        for n, (a, _) in enumerate(spans):
            end = len(line) if n == len(spans) - 1 else spans[n + 1][0]
            cells.append(line[a:end].strip())
        if rows and not cells[0]:  # continuation line: text of the row above
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return rows


def _escape_pipes(cell: str) -> str:
    """Escape ``|`` outside code spans (Markdown tables leave pipes in code spans alone)."""
    parts = re.split(r"(`+.*?`+)", cell)
    return "".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def _tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _TABLE_BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        borders = [j for j in range(i, len(lines)) if lines[j] == border]
        if len(borders) < 2:
            out.append(lines[i])
            i += 1
            continue
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
        after_second = borders[1] + 1
        if len(borders) >= 3 and after_second < len(lines) and lines[after_second].strip():
            top, mid, bottom = borders[:3]  # a header row between the first two borders
            header = _table_rows(lines[top + 1 : mid], spans)
            body = _table_rows(lines[mid + 1 : bottom], spans)
        else:  # no header: Markdown still needs one, left empty
            top, bottom = borders[:2]
            header = [[""] * len(spans)]
            body = _table_rows(lines[top + 1 : bottom], spans)
        ind = " " * _indent(border)
        if out and out[-1].strip():
            out.append("")
        for row in header[:1]:
            out.append(ind + "| " + " | ".join(row) + " |")
            out.append(ind + "|" + "---|" * len(row))
        for row in body:
            out.append(ind + "| " + " | ".join(_escape_pipes(c) for c in row) + " |")
        out.append("")
        i = bottom + 1
    return out


def _underlines(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        prev = out[-1] if out else ""
        if _UNDERLINE.match(line) and prev.strip() and not _TABLE_BORDER.match(prev):
            out[-1] = f"{' ' * _indent(prev)}**{prev.strip()}**"
            out.append("")  # the title is a paragraph of its own
            continue
        out.append(line)
    return out


def _split_item(item: list[str]) -> tuple[list[str], list[str]]:
    """One ``Args:`` entry -> (entries, loose text lines)."""
    text = " ".join(line.strip() for line in item)
    match = _NAMES.match(text)
    if match is None:
        return [], [line.strip() for line in item]
    names = [n.strip() for n in match.group(1).split(",")]
    if len(names) == 1:
        return item, []
    head = len(item[0]) - len(item[0].lstrip())
    # The names may wrap: the description starts on the line holding the colon.
    first, joined = 0, item[0].strip()
    while not _NAMES.match(joined):  # ends: the whole entry matched above
        first += 1
        joined = f"{joined} {item[first].strip()}"
    desc_first = joined[_NAMES.match(joined).end() :].strip()
    rest = item[first + 1 :]
    entries = []
    for name in names:
        entries.append(f"{' ' * head}{name}: {desc_first}")
        entries += rest
    return entries, []


def _args_sections(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if not _ARGS_TITLE.match(lines[i]):
            i += 1
            continue
        title = _indent(lines[i])
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > title):
            j += 1
        body = lines[i + 1 : j]
        items = [b for b in body if b.strip()]
        if not items:
            i = j
            continue
        item_indent = min(_indent(b) for b in items)
        entries: list[list[str]] = []
        for b in body:
            if b.strip() and _indent(b) == item_indent:
                entries.append([b])
            elif entries and b.strip():
                entries[-1].append(b)
        loose: list[str] = []
        for entry in entries:
            kept, text = _split_item(entry)
            out += kept
            loose += text
        if loose:
            out += ["", " " * title + " ".join(loose)]
        out.append("")
        i = j
    return out


def _returns_sections(lines: list[str]) -> list[str]:
    out: list[str] = []
    pending = False
    for line in lines:
        if pending and line.strip():
            line = f"{' ' * _indent(line)}: {line.lstrip()}"
            pending = False
        out.append(line)
        if _RETURNS_TITLE.match(line):
            pending = True
    return out


def markdown_docstring(text: str) -> str:
    """The Markdown the API reference renders for one docstring."""
    text = _ROLE.sub(_role, text)
    lines = text.split("\n")
    for rewrite in (
        _tables,
        _underlines,
        _doctests,
        _literal_blocks,
        _args_sections,
        _returns_sections,
    ):
        lines = rewrite(lines)
    return "\n".join(lines)


_SOURCE_CACHE: dict[Path, list[str]] = {}


def _comment_docstring(obj: griffe.Object) -> str | None:
    path = obj.filepath
    if not isinstance(path, Path) or obj.lineno is None:
        return None
    if path not in _SOURCE_CACHE:
        _SOURCE_CACHE[path] = path.read_text().splitlines()
    source = _SOURCE_CACHE[path]
    comment: list[str] = []
    i = obj.lineno - 2  # the line above the assignment (lineno is 1-based)
    while i >= 0 and source[i].lstrip().startswith("#:"):
        comment.insert(0, source[i].lstrip()[2:].strip())
        i -= 1
    return " ".join(comment) or None


def _runtime_docstring(obj: griffe.Object) -> str | None:
    """``__doc__`` of a module attribute that is a function at run time, or None."""
    if not obj.parent or not obj.parent.is_module:
        return None
    try:
        value = getattr(importlib.import_module(obj.parent.path), obj.name)
    except (ImportError, AttributeError):
        return None
    return value.__doc__ if isinstance(value, types.FunctionType) else None


class ConvjaxDocstrings(griffe.Extension):
    """Rewrites each docstring with :func:`markdown_docstring` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is None and obj.is_attribute:
            text = _comment_docstring(obj) or _runtime_docstring(obj)
            if text:
                obj.docstring = griffe.Docstring(text, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
