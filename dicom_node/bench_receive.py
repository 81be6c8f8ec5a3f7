"""`vpet bench receive`: C-STORE throughput of the node against DCMTK storescp and Orthanc.

Why: the issue's figures (a 512x512x300 CT sent by DCMTK storescu) must be reproducible with
one command. Every receiver gets the same files from the same sender (`/usr/bin/storescu`,
TCP_NODELAY=1); the node runs as `vpet serve` in its own process (durable writes, database
indexing on, no workers) so its peak resident memory (VmHWM) is its own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import yaml

logger = logging.getLogger(__name__)

STORESCU, STORESCP, ORTHANC = "/usr/bin/storescu", "/usr/bin/storescp", "/usr/sbin/Orthanc"
_ENV = dict(os.environ, TCP_NODELAY="1")


@dataclass
class Result:
    """One receiver's figures for one data set."""

    receiver: str
    seconds: float
    instances: int
    nbytes: int
    peak_rss_mb: float | None = None

    @property
    def per_s(self) -> float:
        return self.instances / self.seconds

    @property
    def mb_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_series(out: Path, shape: tuple[int, int, int], seed: int = 0) -> list[Path]:
    """A CT series of random int16 slices (size matters here, not anatomy)."""
    from training.phantoms.dicom_writer import StudyInfo, write_series

    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 2000, size=shape, dtype=np.int16)
    files = write_series(vol, (0.8, 0.8, 1.0), (0.0, 0.0, 0.0), out, modality="CT",
                         study=StudyInfo(), rescale=(1.0, -1024.0))
    # Flush the generated files now: otherwise their writeback competes with the node's
    # per-instance fsyncs (only the node flushes), and the node is measured first.
    os.sync()
    return files


def _wait_port(port: int, proc: subprocess.Popen, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {deadline_s} s")


def storescu(folder: Path, port: int, called: str, nodelay: bool = True) -> float:
    """Send every file of `folder` in one association; wall seconds."""
    cmd = [STORESCU, "-aet", "STORESCU", "-aec", called, "+sd", "-R", "127.0.0.1", str(port),
           str(folder)]
    t0 = time.perf_counter()
    env = _ENV if nodelay else {k: v for k, v in _ENV.items() if k != "TCP_NODELAY"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"storescu failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set size of a process from /proc (no psutil needed)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class NodeProcess:
    """`vpet serve` with workers 0 in a scratch folder."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        cfg = {"node": {"ae_title": "VPET", "port": self.port, "max_pdu": 0},
               "storage": {"path": str(work / "node")}, "series": {"timeout_s": 3600},
               "workers": {"count": 0}, "logging": {"level": "WARNING"}}
        self.cfg_path = work / "node.yaml"
        self.cfg_path.write_text(yaml.safe_dump(cfg))
        self.log = work / "node.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicom_node.cli", "--log-level", "WARNING", "serve",
             "--config", str(self.cfg_path)], stdout=self.log.open("w"),
            stderr=subprocess.STDOUT, env=_ENV)
        _wait_port(self.port, self.proc)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def bench_node(folder: Path, work: Path, n: int, nbytes: int) -> Result:
    with NodeProcess(work) as node:
        seconds = storescu(folder, node.port, "VPET")
        return Result("node (vpet serve)", seconds, n, nbytes, vm_hwm_mb(node.proc.pid))


def bench_node_nagle(folder: Path, work: Path, n: int, nbytes: int) -> Result:
    """The node fed by storescu as most sites run it: without TCP_NODELAY (Nagle on)."""
    with NodeProcess(work) as node:
        seconds = storescu(folder, node.port, "VPET", nodelay=False)
        return Result("node, sender without NODELAY", seconds, n, nbytes,
                      vm_hwm_mb(node.proc.pid))


def bench_storescp(folder: Path, work: Path, n: int, nbytes: int) -> Result:
    port = free_port()
    out = work / "storescp"
    out.mkdir()
    proc = subprocess.Popen([STORESCP, "-aet", "STORESCP", "-pdu", "131072", "-od", str(out),
                             str(port)], env=_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc)
        return Result("DCMTK storescp (-pdu 131072)", storescu(folder, port, "STORESCP"), n,
                      nbytes)
    finally:
        proc.terminate()
        proc.wait(10)


def bench_orthanc(folder: Path, work: Path, n: int, nbytes: int) -> Result:
    port, http = free_port(), free_port()
    root = work / "orthanc"
    root.mkdir()
    config = {"Name": "vpet-bench", "StorageDirectory": str(root / "db"),
              "IndexDirectory": str(root / "db"), "DicomAet": "ORTHANC", "DicomPort": port,
              "HttpPort": http, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
              "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "Plugins": []}
    (root / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], env=_ENV,
                            stdout=(root / "log").open("w"), stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc)
        return Result("Orthanc", storescu(folder, port, "ORTHANC"), n, nbytes)
    finally:
        proc.terminate()
        proc.wait(20)


def run_bench(shape: tuple[int, int, int], small: int, work: Path | None = None,
              orthanc: bool = True, storescp: bool = True, repeat: int = 3) -> dict[str, object]:
    """Rounds of every receiver on the CT (interleaved, so drift in the machine's disk or CPU
    hits all alike), then the node on `small` tiny instances (memory)."""
    if not Path(STORESCU).exists():
        raise RuntimeError(f"{STORESCU} (DCMTK) is required")
    scratch = Path(tempfile.mkdtemp(prefix="vpet-bench-", dir=work))
    try:
        ct = scratch / "ct"
        files = make_series(ct, shape)
        n, nbytes = len(files), sum(f.stat().st_size for f in files)
        benches = {"node": bench_node, "node_nagle": bench_node_nagle}
        if storescp and Path(STORESCP).exists():
            benches["storescp"] = bench_storescp
        if orthanc and Path(ORTHANC).exists():
            benches["orthanc"] = bench_orthanc
        results: dict[str, list[Result]] = {key: [] for key in benches}
        for round_no in range(max(1, repeat)):
            for key, bench in benches.items():
                sub = _sub(scratch, f"{key}-{round_no}")
                results[key].append(bench(ct, sub, n, nbytes))
                shutil.rmtree(sub, ignore_errors=True)
                os.sync()  # the next receiver starts with no writeback pending
        stream = None
        if small:
            tiny = scratch / "stream"
            tiny_files = make_series(tiny, (small, 64, 64), seed=1)
            stream = bench_node(tiny, _sub(scratch, "d"), small,
                                sum(f.stat().st_size for f in tiny_files))
        return {"shape": shape, "results": results, "stream": stream}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def median_result(runs: list[Result]) -> Result:
    """The run with the median time (peak memory: the highest seen)."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    mid = ordered[len(ordered) // 2]
    peaks = [r.peak_rss_mb for r in runs if r.peak_rss_mb]
    return Result(mid.receiver, mid.seconds, mid.instances, mid.nbytes,
                  max(peaks) if peaks else None)


def _sub(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    return path


def report(data: dict[str, object]) -> str:
    """Human-readable figures (medians of the rounds) with the ratios the issue asks for."""
    runs: dict[str, list[Result]] = data["results"]  # type: ignore[assignment]
    results = {key: median_result(r) for key, r in runs.items()}
    z, y, x = data["shape"]  # type: ignore[misc]
    rounds = len(runs["node"])
    lines = [(f"CT {x}x{y}x{z} int16 sent by {STORESCU} (TCP_NODELAY=1), one association; "
             f"median of {rounds} interleaved round(s), range in brackets:")]
    for key, r in results.items():
        times = sorted(run.seconds for run in runs[key])
        rss = f", node peak RSS {r.peak_rss_mb:.0f} MB" if r.peak_rss_mb else ""
        lines.append(f"  {r.receiver:30s} {r.seconds:7.2f} s [{times[0]:.2f}-{times[-1]:.2f}]"
                     f"  {r.per_s:8.1f} instances/s  {r.mb_s:7.1f} MB/s  ({r.instances} "
                     f"instances, {r.nbytes / 1e6:.1f} MB{rss})")
    node = results["node"]
    for key, name in (("storescp", "storescp"), ("orthanc", "Orthanc")):
        if key in results:
            lines.append(f"  speed ratio node/{name}: {results[key].seconds / node.seconds:.2f}"
                         f" (node MB/s divided by {name} MB/s)")
    stream: Result | None = data["stream"]  # type: ignore[assignment]
    if stream is not None:
        lines.append(f"  {stream.instances}-instance stream (64x64): {stream.seconds:.2f} s, "
                     f"{stream.per_s:.0f} instances/s, receiver peak RSS (VmHWM) "
                     f"{stream.peak_rss_mb:.0f} MB")
    return "\n".join(lines)
