"""docs/guides/porting.md runs: its ```python blocks, in order, as one script (each asserts
what the text claims)."""

import pathlib
import re

GUIDE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "guides" / "porting.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_porting_guide_blocks_run_in_order():
    blocks = _python_blocks(GUIDE.read_text())
    assert len(blocks) >= 8  # one or more per section
    namespace: dict = {"__name__": "porting_guide"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{GUIDE.name}, python block {i + 1}", "exec")
        exec(code, namespace)
