"""docs/emulator.md's configuration block runs as written, serving and stopping for real."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "emulator.md"


def configuration_block() -> str:
    section = DOC.read_text(encoding="utf-8").split("## Configuration", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "no python block under ## Configuration"
    return found.group(1)


def test_the_configuration_block_runs_as_written():
    code = configuration_block()
    assert "emulator.start()" in code and "emulator.stop()" in code
    scope: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), scope)
    emulator, url = scope["emulator"], scope["base_url"]
    assert scope["config"].models == ("zai-org/GLM-5.1-FP8", "deepseek-ai/DeepSeek-V4-Pro")
    assert isinstance(url, str) and url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.URLError):  # stopped: nothing listens any more
        urllib.request.urlopen(url + "/models", timeout=5)
    emulator.stop()  # stopping twice does nothing
