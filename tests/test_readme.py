"""The README's quick start is code a new user copies: it must run as printed."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_quick_start_runs(capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "README should hold exactly one Python quick start block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md quick start", "exec"), namespace)
    assert namespace["y"].shape == (8, 14, 14, 16)
    assert namespace["z"].shape == (8, 7, 7, 16)
    assert namespace["table"].to_dict()["total_params"] == 871_082
    assert "Total params: 871,082" in capsys.readouterr().out
