"""The `vpet` CLI: config check, echo, send and offline run (typer's CliRunner, real network)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dicom_node.cli import app
from tests.conftest import make_tiny_ct

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("serve", "worker", "echo", "send", "run", "demo", "phantoms", "train", "config"):
        assert cmd in result.output


def test_config_check(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("node: {ae_title: VPET, port: 11112}\n")
    result = runner.invoke(app, ["config", "check", str(good)])
    assert result.exit_code == 0 and "OK" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("destinations: {pacs: {ae_title: P, host: h, port: nope}}\n")
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    assert "destinations.pacs.port" in result.output


def test_echo_and_send(node, tmp_path):
    port = str(node.port)
    result = runner.invoke(app, ["echo", "127.0.0.1", port, "--aet", "VPET"])
    assert result.exit_code == 0 and "0x0000" in result.output
    files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
    result = runner.invoke(app, ["send", str(tmp_path / "ct"), "--port", port, "--aet", "VPET"])
    assert result.exit_code == 0, result.output
    assert f"sent {len(files)}/{len(files)}" in result.output
    result = runner.invoke(app, ["echo", "127.0.0.1", port, "--aet", "WRONG"])
    assert result.exit_code == 1 and "rejected" in result.output


def test_offline_run(tmp_path):
    pytest.importorskip("pipeline.runner")
    from tests.dicom_node.test_round_trip import tiny_package

    pkg = tiny_package(tmp_path / "pkg")
    make_tiny_ct(tmp_path / "ct")
    result = runner.invoke(app, ["run", str(tmp_path / "ct"), "--out", str(tmp_path / "out"),
                                 "--model", str(pkg), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Outputs" in result.output and "Lesions" in result.output
    assert list((tmp_path / "out").rglob("*.dcm"))
