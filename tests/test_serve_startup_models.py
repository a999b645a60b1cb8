"""`ragtrim serve` readies its default preset's models before any worker starts (a fresh install's
first request got a 500 because the static model was not built), and a preset that cannot run on
this install is one line, exit 2."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

import ragtrim.serve.commands as commands
from optimizer.pipeline import Pipeline


def cli() -> typer.Typer:
    app = typer.Typer()
    commands.register(app)
    return app


def test_serve_warms_the_configured_preset_before_starting(monkeypatch, tmp_path):
    warmed, started = [], []
    monkeypatch.setattr(Pipeline, "warm_up", lambda self: warmed.append(self.name) or self)

    class FakeUvicorn:
        @staticmethod
        def run(*args, **kwargs):
            started.append(warmed[:])

    monkeypatch.setattr(commands, "_need", lambda *m, **k: [FakeUvicorn])
    config = tmp_path / "serve.toml"
    config.write_text('preset = "quality"\n', encoding="utf-8")
    out = CliRunner().invoke(cli(), ["serve", "--config", str(config), "--db", f"sqlite:///{tmp_path}/s.sqlite"])
    assert out.exit_code == 0, out.output
    assert started == [["quality"]]  # warmed before uvicorn ran


def test_a_preset_that_cannot_run_is_one_line_exit_2_before_any_worker(monkeypatch, tmp_path):
    def broken(self):
        exc = RuntimeError("building the static model failed (exit 1): static embeddings (model2vec) needs 'model2vec'\nTraceback ...")
        exc.add_note("in stage 'dense' (optimizer.stages.Dense)")
        raise exc

    monkeypatch.setattr(Pipeline, "warm_up", broken)
    monkeypatch.setattr(commands, "_need", lambda *m, **k: [object()])  # uvicorn is never reached
    out = CliRunner().invoke(cli(), ["serve", "--db", f"sqlite:///{tmp_path}/s.sqlite"])
    assert out.exit_code == 2
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "preset 'default' cannot run" in lines[0] and "model2vec" in lines[0]
    assert "needs 'model2vec'; in stage 'dense' (optimizer.stages.Dense) (install" in lines[0]  # the note kept
    assert "Traceback" not in out.output
