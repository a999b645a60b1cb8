"""What a user installing ragtrim gets: one version everywhere, the license and docs in the source
distribution, and install lines that do not pull a CUDA torch or more than a command needs."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import optimizer
from optimizer.lazy import MissingDependency, install_command, lazy_import

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_is_written_once_and_every_surface_reports_it():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "optimizer.__version__"}
    assert metadata.version("ragtrim") == optimizer.__version__
    from ragtrim.cli import app

    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output == f"ragtrim {optimizer.__version__}\n"
    # no other file spells a version of its own
    written = [p for p in (ROOT / "ragtrim").rglob("*.py") if f'"{optimizer.__version__}"' in p.read_text(encoding="utf-8")]
    assert written == []


def test_the_license_is_the_declared_one_and_ships_in_the_wheel_metadata():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_the_source_distribution_carries_the_license_docs_examples_and_notebooks(tmp_path):
    code = "import sys, setuptools.build_meta as b; print(b.build_sdist(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name = proc.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        files = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    wanted = {"LICENSE", "README.md", "DESIGN.md", "BENCHMARKS.md", "examples/faiss_quickstart.py",
              "notebooks/01-quickstart.ipynb", "evals/prices.toml", "optimizer/data/scorer-default.json"}
    assert wanted <= files, sorted(wanted - files)
    assert any(f.startswith("datasets/") and f.endswith(".jsonl") for f in files)


def test_an_extra_that_pulls_torch_says_to_install_the_cpu_build_first():
    line = install_command("embeddings")
    assert line.startswith("pip install torch --index-url https://download.pytorch.org/whl/cpu && ")
    assert line.endswith("pip install 'ragtrim[embeddings]'")
    assert install_command("onnx,serve") == "pip install 'ragtrim[onnx,serve]'"
    with pytest.raises(MissingDependency) as info:
        lazy_import("surely_not_a_module_ragtrim", extra="embeddings", purpose="a test")
    assert "download.pytorch.org/whl/cpu" in str(info.value)


def test_the_static_model_asks_only_for_model2vec(monkeypatch):
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert extras["static"] == ["model2vec>=0.10,<0.11"]
    # the same pin wherever model2vec is listed, so extras installed one after another agree
    pins = {d for deps in extras.values() for d in deps if d.startswith("model2vec")}
    assert {p.replace("[distill]", "") for p in pins} == {"model2vec>=0.10,<0.11"}
    from optimizer import embeddings

    monkeypatch.setitem(sys.modules, "model2vec", None)
    with pytest.raises(MissingDependency) as info:
        embeddings.build_static_model(Path("unused"))
    message = str(info.value)
    assert "pip install 'ragtrim[static]'" in message and "torch" not in message
    hint = embeddings._build_hint("static", "ModuleNotFoundError: No module named 'model2vec'", Path("x/static"))
    assert "pip install 'ragtrim[static]'" in hint and "--only static" in hint


def test_the_console_script_names_the_static_extra_for_model2vec():
    from ragtrim.cli import install_hint

    hint = install_hint(ModuleNotFoundError("No module named 'model2vec'", name="model2vec"), ["optimize"])
    assert hint.endswith("install it with: pip install 'ragtrim[static]'")
    hint = install_hint(ModuleNotFoundError("No module named 'faiss'", name="faiss"), ["eval"])
    assert "download.pytorch.org/whl/cpu" in hint and "ragtrim[embeddings]" in hint
