"""Smoke test of `vpet bench receive` on a tiny size (the benchmark prints numbers; no timing
assertions here)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dicom_node.bench_receive import report, run_bench
from dicom_node.cli import app
from tests.conftest import require_tool


@pytest.mark.interop
@pytest.mark.timeout(180)
def test_bench_receive_tiny(tmp_path):
    require_tool("/usr/bin/storescu")
    require_tool("/usr/bin/storescp")
    require_tool("/usr/sbin/Orthanc")
    data = run_bench((3, 32, 32), small=5, work=tmp_path, repeat=2)
    assert set(data["results"]) == {"node", "node_nagle", "storescp", "orthanc"}
    assert all(len(runs) == 2 for runs in data["results"].values())
    assert all(r.instances == 3 and r.seconds > 0
               for runs in data["results"].values() for r in runs)
    assert data["stream"].peak_rss_mb > 0
    text = report(data)
    assert "speed ratio node/storescp" in text and "speed ratio node/Orthanc" in text
    assert "instances/s" in text and "MB/s" in text and "peak RSS" in text


@pytest.mark.interop
@pytest.mark.timeout(120)
def test_bench_receive_cli(tmp_path):
    require_tool("/usr/bin/storescu")
    result = CliRunner().invoke(app, ["bench", "receive", "--shape", "2,16,16", "--stream", "0",
                                      "--no-orthanc", "--no-storescp", "--repeat", "1",
                                      "--work", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "node (vpet serve)" in result.output
