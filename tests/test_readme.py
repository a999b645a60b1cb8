"""The README's Python examples run as written (a newcomer copies them first)."""

import re
from pathlib import Path

import pytest

from optimizer import registry

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    block = BLOCKS[index]
    if "client." in block and "client =" not in block:  # a gateway client's call: test_serve_responses runs it live
        pytest.skip("needs the OpenAI client of the service example above (tests/test_serve_responses.py runs it)")
    if "llama_index" in block or "langchain" in block or "VectorStoreIndex" in block:
        pytest.importorskip("llama_index.core" if "llama_index" in block else "langchain_core")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))  # stages a block registers stay in it
    exec(compile(block, f"README.md block {index}", "exec"), {"__name__": "readme"})
