"""The README's reading example must work exactly as written."""
import re

import pytest

from tests.conftest import REPO


def _python_block(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if marker in b]
    assert blocks, f"README has no python block with {marker!r}"
    return blocks[0]


def test_plain_zarr_reading_example(demo_store, capsys):
    code = _python_block("zarr.open_group")
    assert 'store = "demo/features.zarr"' in code and len(code.strip().splitlines()) <= 12
    exec(code.replace("demo/features.zarr", str(demo_store)), {})
    printed = capsys.readouterr().out
    assert printed.startswith("(8, 988) [0.  0.5] pcm_intensity_sma_max none")
