"""Live reload of rules, destinations, recipes, allowed peers and sender settings.

Why: a PACS admin edits routing while studies stream in. The SCP keeps running (no
association is dropped): the new values are assigned onto the running node's config object,
which the SCP and the tracker read on every use; worker processes got the config at spawn,
so they are replaced (each finishes its current job first) when what they use changed.
A file that does not validate is logged and the running config stays.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dicom_node.config import Config, load_config
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

LIVE = ("recipes", "destinations", "sender", "allowed_peers", "rules")  # order matters: rules last
WORKER_SECTIONS = ("recipes", "destinations", "sender")


def changed_sections(old: Config, new: Config) -> list[str]:
    """Top-level config sections whose values differ."""
    return [name for name in Config.model_fields
            if getattr(old, name) != getattr(new, name)]


def apply_config(config: Config, new: Config, node: Any = None) -> list[str]:
    """Copy the live sections of `new` onto `config` in place; returns what changed.

    Recipes and destinations are assigned before the rules that name them, so a concurrent
    reader never sees a rule whose recipe is missing.
    """
    changed = changed_sections(config, new)
    for name in LIVE:
        if name in changed:
            setattr(config, name, getattr(new, name))
    later = [c for c in changed if c not in LIVE]
    if later:
        logger.warning("config sections %s changed: they take effect after a restart",
                       ", ".join(later))
    live = [c for c in changed if c in LIVE]
    if live:
        logger.info("config reloaded: %s updated (%d rule(s), %d destination(s))",
                    ", ".join(live), len(config.rules), len(config.destinations))
    if node is not None and any(c in WORKER_SECTIONS for c in changed):
        recycle = getattr(node, "recycle_workers", None)
        if recycle is not None:
            recycle()
    return changed


class ConfigWatcher(threading.Thread):
    """Polls the file's mtime/size every `interval_s`; `request()` (SIGHUP) reloads at once."""

    def __init__(self, path: Path | str, on_change: Callable[[Config], object],
                 interval_s: float = 1.0) -> None:
        super().__init__(name="vpet-config-watch", daemon=True)
        self.path, self.on_change, self.interval_s = Path(path), on_change, interval_s
        self._stamp = self._read_stamp()
        self._wake = threading.Event()
        self._stop_event = threading.Event()
        self.reloads = 0  # successful reloads (tests poll it)
        self.failures = 0

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def request(self) -> None:
        """Reload now (what SIGHUP does); safe to call from a signal handler."""
        self._wake.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            forced = self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop_event.is_set():
                return
            stamp = self._read_stamp()
            if forced or (stamp is not None and stamp != self._stamp):
                self._stamp = stamp
                self.reload()

    def reload(self) -> bool:
        try:
            new = load_config(self.path)
        except ConfigError as exc:
            logger.error("config reload rejected, keeping the running config: %s", exc)
            self.failures += 1  # after the log line: observers may read the counter at once
            return False
        try:
            self.on_change(new)
        except Exception:
            logger.exception("config reload failed while applying %s", self.path)
            self.failures += 1
            return False
        self.reloads += 1
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)


def watch_config(path: Path | str, node: Any, interval_s: float = 1.0,
                 sighup: bool = True) -> ConfigWatcher:
    """Start watching `path` for `node` (reload on change and, in the main thread, SIGHUP)."""
    watcher = ConfigWatcher(path, lambda new: apply_config(node.config, new, node), interval_s)
    watcher.start()
    if sighup and threading.current_thread() is threading.main_thread() and hasattr(
            signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: watcher.request())
    logger.info("watching %s for changes (every %.1f s, and on SIGHUP)", path, interval_s)
    return watcher
