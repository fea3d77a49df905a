"""A Switchboard service as a real OS process, for the end-to-end tests and benchmarks.

``python -m switchboard.<name>`` with the environment given (configured only through
``SWITCHBOARD_*`` variables), its output appended to a log file. ``start`` again after
``kill`` or ``stop`` restarts it with the same settings.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServiceProcess"]


@dataclass
class ServiceProcess:
    """One service process on ``127.0.0.1:http_port``."""

    name: str
    env: dict[str, str]
    http_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(  # noqa: S603  # this interpreter with a fixed module
                [sys.executable, "-m", f"switchboard.{self.name}"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no flush."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM: the service drains, commits and exits; :meth:`wait` for it."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 15) -> None:
        """Until the process exited; SIGKILL when it has not within ``timeout`` seconds."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (graceful), SIGKILL when it does not exit in time."""
        self.terminate()
        self.wait(timeout)

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200; raises when the process has exited (naming its log)."""
        if self.process is None or not self.running:
            exited = "not started" if self.process is None else f"code {self.process.returncode}"
            raise AssertionError(f"{self.name} exited ({exited}); see {self.log_path}")
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:  # noqa: S310  # our loopback URL
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False
