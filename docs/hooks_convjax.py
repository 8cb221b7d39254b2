"""MkDocs hooks: pages that show a table the code holds, so the page cannot fall behind it.

``<!-- convjax:config-fields -->`` on a page becomes the table of every run-config field
(``convjax.train.config.FIELDS``: field, default, rule, meaning), built from the code when
the site is built. mkdocs.yml loads this file with ``hooks: [docs/hooks_convjax.py]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The pages document this checkout's convjax (griffe reads its source from "."): import the
# same one here, not another copy installed in the environment.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

MARKER = "<!-- convjax:config-fields -->"


def _cell(text: str) -> str:
    # A "|" inside a cell would end it ("sgd | adam | adamw").
    return str(text).replace("|", "\\|")


def config_fields_table() -> str:
    """The run-config fields as a Markdown table."""
    from convjax.train.config import FIELDS

    lines = ["| field | default | value | meaning |", "|---|---|---|---|"]
    for name, field in FIELDS.items():
        default = field.default if not callable(field.default) else field.default.__name__
        lines.append(
            f"| `{name}` | `{_cell(repr(default))}` | {_cell(field.rule)} | "
            f"{_cell(field.meaning)} |"
        )
    lines.append("| `model.*` | | | the other keyword arguments of the model's constructor |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_fields_table())
    return markdown
