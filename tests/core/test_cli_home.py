"""A home laid out before use cases had state of their own is refused with what to do."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from blueprint_cli.home import OLD_LAYOUT
from blueprint_cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("old", OLD_LAYOUT)
def test_a_home_of_the_old_layout_is_refused(tmp_path, monkeypatch, old):
    home = tmp_path / "home"
    (home / old).parent.mkdir(parents=True, exist_ok=True)
    (home / old).write_text("") if "." in old else (home / old).mkdir()
    monkeypatch.setenv("BLUEPRINT_HOME", str(home))
    result = runner.invoke(app, ["scan-pii"])
    assert result.exit_code == 2
    assert "made by an older Blueprint" in result.output and old in result.output
    assert "make demo" in result.output


def test_a_home_of_the_current_layout_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("BLUEPRINT_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["scan-pii"])
    assert result.exit_code == 0, result.output
