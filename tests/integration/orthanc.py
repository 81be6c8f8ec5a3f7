"""Start a real Orthanc on 127.0.0.1 with its own config and storage, and talk to its REST API."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Orthanc:
    """A running Orthanc process: DICOM on `dicom_port`, REST on `http_port` (localhost only)."""

    process: subprocess.Popen
    dicom_port: int
    http_port: int
    ae_title: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            body = resp.read()
            if resp.headers.get_content_type() == "application/json":
                return json.loads(body)
            return body

    def get_status(self, path: str) -> tuple[int, str]:
        """HTTP status and content type, without raising on 4xx."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as resp:
                return resp.status, resp.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def post(self, path: str, data: bytes | dict):
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            raw = resp.read()
            return json.loads(raw) if raw[:1] in (b"{", b"[") else raw

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_orthanc(binary: str, work: Path, dicom_port: int, http_port: int,
                  modalities: dict[str, list], ae_title: str = "ORTHANC",
                  deadline_s: float = 60) -> Orthanc:
    """Write a config into `work`, start Orthanc, and wait until its REST API answers."""
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "vpet-test-pacs",
        "StorageDirectory": str(work / "db"),
        "IndexDirectory": str(work / "db"),
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": modalities,
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False,
        "StableAge": 2,
        "Plugins": [],
    }
    config_path = work / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = work / "orthanc.log"
    env = dict(os.environ, TCP_NODELAY="1")
    proc = subprocess.Popen([binary, str(config_path)], stdout=log_path.open("w"),
                            stderr=subprocess.STDOUT, env=env)
    orthanc = Orthanc(proc, dicom_port, http_port, ae_title, log_path)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited: {log_path.read_text()[-2000:]}")
        try:
            orthanc.get("/system")
            return orthanc
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    orthanc.stop()
    raise RuntimeError(f"Orthanc did not answer within {deadline_s} s")
