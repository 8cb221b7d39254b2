"""The documentation site: guides whose code runs, a complete API reference, a page that renders.

Guides (``docs/guides/*.md``): every fenced block that opens with exactly ```` ```python ````
runs, in page order, as one script per page, in a fresh Python process whose working directory
is an empty folder with ``configs/`` linked in (so ``workdirs/...`` paths in a guide land in
that folder). A block that must not run -- a file shown for reading, say -- opens with
anything else after ``python``, e.g. ```` ```python title="configs/ablations/x.py" ````; keep
them rare. The script keeps the page's line numbers, so a traceback points at the Markdown.
"""

from __future__ import annotations

import ast
import functools
import http.server
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import threading
import types
from pathlib import Path

import _chromium
import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
FENCE = re.compile(r"^(`{3,})(.*)$")


def guide_script(text: str) -> tuple[str, int]:
    """The runnable code of a Markdown page as one script with the page's line numbers
    (every other line blank), and how many blocks it holds."""
    out: list[str] = []
    blocks = 0
    fence = None  # the open fence's backticks, and whether its block runs
    for line in text.split("\n"):
        match = FENCE.match(line)
        if fence is None and match:
            fence = (match.group(1), match.group(2).strip() == "python")
            blocks += fence[1]
            out.append("")
        elif fence is not None and line.strip() == fence[0]:
            fence = None
            out.append("")
        else:
            out.append(line if fence is not None and fence[1] else "")
    if fence is not None:
        raise ValueError("a code block is not closed")
    return "\n".join(out), blocks


def test_guide_script_keeps_runnable_blocks_and_line_numbers():
    page = "\n".join(
        [
            "# Title",  # 1
            "```python",  # 2
            "a = 1",  # 3
            "```",  # 4
            "text",  # 5
            '```python title="shown only"',  # 6
            "raise SystemExit",  # 7
            "```",  # 8
            "```bash",  # 9
            "rm -rf /",  # 10
            "```",  # 11
            "````python",  # 12
            "b = a + 1  # ``` inside a longer fence",  # 13
            "````",  # 14
        ]
    )
    script, blocks = guide_script(page)
    lines = script.split("\n")
    assert blocks == 2 and len(lines) == 14
    assert lines[2] == "a = 1" and lines[12].startswith("b = a + 1")
    assert [i for i, line in enumerate(lines) if line] == [2, 12]
    namespace: dict = {}
    exec(compile(script, "page.md", "exec"), namespace)
    assert namespace["b"] == 2
    with pytest.raises(ValueError, match="not closed"):
        guide_script("```python\nx = 1\n")


@pytest.mark.parametrize("page", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_code_runs(page, tmp_path):
    script, blocks = guide_script(page.read_text())
    assert blocks >= 1, f"{page.name} has no runnable ```python block"
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # a guide sets its own
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MPLBACKEND"] = "Agg"
    code = f"exec(compile({script!r}, {str(page)!r}, 'exec'))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{page.name} failed:\n{proc.stderr[-6000:]}"


# --------------------------------------------------------------------------- API reference


def _griffe_extension():
    spec = importlib.util.spec_from_file_location(
        "griffe_convjax", ROOT / "docs" / "griffe_convjax.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstrings_rendered_as_markdown():
    md = _griffe_extension().markdown_docstring
    # Sphinx roles -> code; a leading ~ keeps the last name only.
    assert md("see :func:`~convjax.functional.conv` and :class:`Summary`.") == (
        "see `conv` and `Summary`."
    )
    # doctests -> a fenced pycon block (Markdown would quote >>> lines)
    assert md("Text.\n>>> f(1)\n2\n\nMore.") == "Text.\n\n```pycon\n>>> f(1)\n2\n```\n\nMore."
    # Title:: and an indented literal block -> Title: and a fenced block, language guessed
    assert md("Example::\n\n    y = f(x)\n\nAfter.") == (
        "Example:\n\n```python\ny = f(x)\n```\n\nAfter."
    )
    assert "```text" in md("Run::\n\n    .venv/bin/python -m x --flag\n")
    # reST simple tables -> Markdown tables; wrapped cells join; pipes in code stay
    table = "\n".join(
        [
            "====  ==========",
            "mode  rule",
            "====  ==========",
            "a     first",
            "      continued",
            "b     ``|x|`` or |y|",
            "====  ==========",
        ]
    )
    assert md(table) == "\n".join(
        [
            "| mode | rule |",
            "|---|---|",
            "| a | first continued |",
            "| b | ``|x|`` or \\|y\\| |",
            "",
        ]
    )
    headerless = "====  ====\nx     1\ny     2\n====  ====\n"
    assert md(headerless).split("\n")[:4] == ["|  |  |", "|---|---|", "| x | 1 |", "| y | 2 |"]
    # section underlines -> a bold paragraph
    assert md("Kinks\n-----\nAt a kink.") == "**Kinks**\n\nAt a kink."
    # grouped argument names -> one entry each; a nameless line leaves the section
    args = "Args:\n  a, b,\n    c: shared.\n  d: own.\n  Others as :func:`f`.\n"
    assert (
        md(args) == "Args:\n  a: shared.\n  b: shared.\n  c: shared.\n  d: own.\n\nOthers as `f`.\n"
    )
    # Returns: an empty type first, so a colon in the text is not read as one
    assert md("Returns:\n  ``x.shape[:k]`` values.") == "Returns:\n  : ``x.shape[:k]`` values."


#: Packages whose every public name the API reference documents.
PACKAGES = (
    "functional",
    "testing",
    "nn",
    "models",
    "inspect",
    "interop",
    "data",
    "train",
    "tuning",
)

#: Modules whose every public name the API reference documents too (beyond their package's
#: re-exports): the training floor's modules and the inspect figures.
MODULES = tuple(
    f"convjax.train.{name}"
    for name in (
        "config",
        "config_files",
        "factory",
        "engine",
        "state",
        "report",
        "runs",
        "ablation",
        "ablation_tables",
        "stats",
        "sweep",
        "sweep_space",
        "sweep_tables",
        "schedules",
        "checkpoint",
        "metrics",
        "population",
        "sharding",
        "distributed",
        "saved",
        "cli",
        "errors",
        "optim",
        "steps",
        "loops",
        "inputs",
    )
) + ("convjax.inspect.figures",)


def public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, else the names ``dir()`` lists (a package's ``__dir__`` adds its lazy
    names), less submodules and ``_`` names."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name in dir(module)
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(getattr(module, name), types.ModuleType)
    ]


def _is_constant(name: str, value) -> bool:
    # An UPPER_CASE module constant of the library's own (tuples, dicts, strings, numbers,
    # convjax objects); another library's object bound to a name (absl's FLAGS) is not one.
    owner = type(value).__module__
    return name.isupper() and (owner == "builtins" or owner.startswith(("convjax", "types")))


def module_public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, else what the module's own source defines at top level: functions,
    classes and UPPER_CASE constants (not imported names, type aliases or ``_`` names)."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    tree = ast.parse(Path(module.__file__).read_text())
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name) and _is_constant(
                        leaf.id, getattr(module, leaf.id)
                    ):
                        out.append(leaf.id)
    return [n for n in dict.fromkeys(out) if not n.startswith("_")]


def test_module_public_names_reads_the_source(tmp_path, monkeypatch):
    (tmp_path / "docs_probe_mod.py").write_text(
        "import os\n"
        "from typing import Any\n"
        "PyTree = Any\n"
        "LIMIT, OTHER = 2, 3\n"
        "PATH_SEP = os.sep\n"
        "ENVIRON = os.environ\n"
        "_HIDDEN = 1\n"
        "def f(): pass\n"
        "class K: pass\n"
        "def _g(): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("docs_probe_mod")
    assert module_public_names(module) == ["LIMIT", "OTHER", "PATH_SEP", "f", "K"]
    module.__all__ = ["f"]
    assert module_public_names(module) == ["f"]


def resolve(path: str):
    """The object a dotted ``convjax...`` path names (longest importable module prefix)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(path)


def api_directives() -> list[str]:
    paths = []
    for page in sorted((ROOT / "docs" / "api").rglob("*.md")):
        paths += re.findall(r"^::: (\S+)", page.read_text(), flags=re.M)
    return paths


def test_attribute_docstrings_from_comments_and_runtime():
    import griffe

    extensions = griffe.load_extensions(str(ROOT / "docs" / "griffe_convjax.py"))
    resnet = griffe.load("convjax.models.resnet", search_paths=[ROOT], extensions=extensions)
    assert resnet["ResNet34"].docstring.value.startswith("ResNet-34: 21,797,672 parameters")
    conv = griffe.load("convjax.functional.conv", search_paths=[ROOT], extensions=extensions)
    assert conv["conv2d"].docstring.value.startswith("2-D `conv`: ``kernel`` must have rank 4")


def test_api_reference_documents_every_public_name():
    documented = {}
    for path in api_directives():
        documented.setdefault(path.rsplit(".", 1)[-1], []).append(resolve(path))
    wanted = [
        (f"convjax.{package}", name, module)
        for package in PACKAGES
        for module in [importlib.import_module(f"convjax.{package}")]
        for name in public_names(module)
    ]
    wanted += [
        (path, name, module)
        for path in MODULES
        for module in [importlib.import_module(path)]
        for name in module_public_names(module)
    ]
    missing = [
        f"{path}.{name}"
        for path, name, module in wanted
        if not any(obj is getattr(module, name) for obj in documented.get(name, []))
    ]
    assert not missing, f"public names without an entry under docs/api/: {missing}"


def test_public_names_include_lazy_exports():
    # convjax.data imports its TFDS builder on first use; the reference must still list it.
    import convjax.data

    assert "FashionMnistLocal" in public_names(convjax.data)
    assert "load_dataset" in public_names(convjax.data)


# --------------------------------------------------------------------------- the built site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with ``mkdocs build --strict``, served on 127.0.0.1."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    handler = functools.partial(QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def _check_page(url: str, expressions: dict[str, str]) -> dict:
    assert _chromium.find_chromium(), (
        "headless Chromium is needed: scripts/install.sh --test installs Debian's chromium "
        "package (apt-get install chromium)"
    )
    page = _chromium.load_page(url, expressions)
    assert page.loaded, f"{url} did not finish loading"
    assert page.errors == [], f"{url}: browser console errors {page.errors}"
    base = url.split("/", 3)[:3]
    outside = [
        u
        for u in page.requests
        if not (u.startswith("/".join(base) + "/") or u.startswith("data:"))
    ]
    assert outside == [], f"{url} fetched resources from outside the site: {outside}"
    return page.values


def test_home_page_renders(site):
    values = _check_page(
        site + "/",
        {
            "title": "document.title",
            "code": "document.querySelector('article pre code')?.innerText ?? ''",
            "guides": "[...document.querySelectorAll('nav a')].map(a => a.innerText).join('|')",
        },
    )
    assert values["title"] == "convjax"
    assert 'cf.conv(x, p["kernel"], p["bias"], stride=2' in values["code"]  # README quick start
    assert "Convolution arithmetic" in values["guides"]


def test_conv_api_page_renders_the_signature(site):
    values = _check_page(
        site + "/api/functional/conv/",
        {
            "heading": "document.getElementById('convjax.functional.conv.conv')?.innerText ?? ''",
            "signature": "document.querySelector('.doc-signature')?.innerText ?? ''",
            "params": "[...document.querySelectorAll('li.doc-section-item > b > code')]"
            ".map(c => c.innerText).join(' ')",
        },
    )
    assert "conv" in values["heading"]
    signature = re.sub(r"\s+", "", values["signature"])
    assert signature.startswith('conv(x,kernel,bias=None,*,stride=1,padding="VALID"')
    assert "strict=False" in signature
    assert "padding_mode" in values["params"]


def _hooks():
    spec = importlib.util.spec_from_file_location(
        "hooks_convjax", ROOT / "docs" / "hooks_convjax.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_field_table_has_one_row_per_field_and_four_cells():
    from convjax.train.config import FIELDS

    rows = _hooks().config_fields_table().split("\n")
    assert len(rows) == 2 + len(FIELDS) + 1  # header, rule, fields, model.*
    for row in rows:
        # "sgd | adam | adamw" in a meaning must not open extra cells: 5 unescaped pipes
        assert len(re.findall(r"(?<!\\)\|", row)) == 5, row
    assert rows[2].startswith(f"| `{next(iter(FIELDS))}` |")
    page = "# Configs\n\n<!-- convjax:config-fields -->\n"
    assert _hooks().on_page_markdown(page).count("\n| `") == len(FIELDS) + 1


def test_config_page_shows_every_field(site):
    from urllib.request import urlopen

    from convjax.train.config import FIELDS

    with urlopen(site + "/api/train/config/") as response:
        html = response.read().decode()
    cells = set(re.findall(r"<td><code>([^<]+)</code></td>", html))
    assert set(FIELDS) <= cells, sorted(set(FIELDS) - cells)
