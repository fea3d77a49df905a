"""Watching the rules file: a changed, valid file is put in force; an invalid one is refused.

A Kubernetes ConfigMap mounted as a directory changes by swapping a ``..data`` symlink,
so the watcher compares the content it reads through the path (a digest), not inode or
modification times. An invalid new file keeps the rules in force, sets the
``switchboard_router_rules_file_valid`` gauge to 0 and logs every problem with its file,
line and field, once per distinct content.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

from switchboard.common.logging import get_logger
from switchboard.router.metrics import RouterMetrics
from switchboard.router.rules import Rules, RulesError, RulesIssue, parse_rules

__all__ = ["RulesWatcher"]

log = get_logger(__name__)


class RulesWatcher:
    def __init__(
        self, path: Path, *, on_rules: Callable[[Rules], None], metrics: RouterMetrics, interval: float = 2.0
    ) -> None:
        self.path = path
        self.interval = interval
        self._on_rules = on_rules
        self._metrics = metrics
        self._digest: bytes | None = None

    def load_initial(self) -> Rules:
        """Read the rules at start; raises :class:`RulesError` (the service must not start without rules)."""
        data = self._read()
        if data is None:
            raise RulesError([RulesIssue(str(self.path), None, "", "cannot read the rules file")])
        rules = parse_rules(data.decode("utf-8", "replace"), str(self.path))
        self._digest = hashlib.sha256(data).digest()
        self._metrics.rules_valid.set(1)
        return rules

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def check(self) -> Rules | None:
        """Read the file once; new valid rules are handed on (and returned)."""
        data = self._read()
        if data is None:
            if self._digest != b"missing":
                log.error("rules file cannot be read; the rules in force stay", path=str(self.path))
                self._metrics.rules_reloads.labels("unreadable").inc()
                self._metrics.rules_valid.set(0)
                self._digest = b"missing"
            return None
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            return None
        self._digest = digest
        try:
            rules = parse_rules(data.decode("utf-8", "replace"), str(self.path))
        except RulesError as exc:
            self._metrics.rules_reloads.labels("invalid").inc()
            self._metrics.rules_valid.set(0)
            log.error(
                "new rules file is invalid; the rules in force stay",
                path=str(self.path),
                problems=[str(issue) for issue in exc.issues],
            )
            return None
        self._metrics.rules_reloads.labels("applied").inc()
        self._metrics.rules_valid.set(1)
        log.info("rules file changed; new rules go in force", path=str(self.path), tenants=sorted(rules.tenants))
        self._on_rules(rules)
        return rules

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()  # a few milliseconds: small file, CEL compiled once per change
            except Exception:
                log.exception("rules check failed")
