"""Structured logging: job id and series UID on every job log line; optional JSON lines.

Why: one log stream carries many jobs at once (several workers, several machines); the
fields `job_id` and `series_uid` let an admin grep or query one job's story. JSON output
(`vpet --log-format json`, env VPET_LOG_FORMAT=json for spawned workers) feeds log shippers.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

CONTEXT_FIELDS = ("job_id", "series_uid", "sop_instance_uid", "destination")
ENV = "VPET_LOG_FORMAT"


def job_logger(logger: logging.Logger, job_id: int, series_uid: str) -> logging.LoggerAdapter:
    """A logger whose records carry `job_id` and `series_uid` as attributes."""
    return logging.LoggerAdapter(logger, {"job_id": job_id, "series_uid": series_uid})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message and context fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "process": record.processName,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class ContextFormatter(logging.Formatter):
    """Plain text with ` job=.. series=..` appended when the record carries them."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{k.removesuffix('_uid')}={getattr(record, k)}"
                         for k in ("job_id", "series_uid") if getattr(record, k, None))
        if not extra:
            return text
        head, sep, tail = text.partition("\n")
        return f"{head} [{extra}]{sep}{tail}"


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    return ContextFormatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")


def configure_worker_logging(level: str) -> None:
    """Handlers for a spawned worker process (the parent's handlers do not travel)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(make_formatter(os.environ.get(ENV, "text")))
        root.addHandler(handler)
        root.setLevel(level)
    logging.getLogger("alembic").setLevel("DEBUG" if level == "DEBUG" else "WARNING")
