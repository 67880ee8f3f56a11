"""A private redis-server on loopback, for the tests and the benchmark (never the system's).

It listens on 127.0.0.1 only, with a password and an append-only file, so that a stop and
a start keep its data as a production Redis would.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRedis:
    def __init__(self, folder: Path, password: str, binary: str | None = None):
        self.binary = binary or shutil.which("redis-server")
        if self.binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.folder, self.password, self.port = Path(folder), password, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password,
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder),
             "--daemonize", "no", "--logfile", str(self.folder / "redis.log")])
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except Exception:  # noqa: BLE001 - still starting
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start: " + self.log()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # redis writes its append-only file and exits
            self.process.wait(30)

    def client(self):
        from redis import Redis

        return Redis.from_url(self.url, password=self.password, socket_connect_timeout=2)

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""
