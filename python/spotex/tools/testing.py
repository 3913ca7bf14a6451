"""A real ``spotex serve`` in a process of its own, on a free loopback port: what the
tests, the load generator and the install check start when they need a server that can
be killed, restarted or measured from outside."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from spotex.server.logs import LISTENING


class ServerProcess:
    """``spotex serve --listen 127.0.0.1:0`` with ``options``; ``target`` is where it
    listens once started. Its log (stderr) is drained by a thread into ``log``, so the
    server never blocks on a full pipe and a test can read what it said when it stopped.
    Money is not checked (buyers need no deposit) unless ``options`` set
    ``--default-credit-limit``."""

    def __init__(self, data_dir: Path | str, operator_token: str, *options: str,
                 python: str = sys.executable, timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [python, "-m", "spotex.cli", "serve", "--listen", "127.0.0.1:0",
             "--data-dir", str(data_dir), "--operator-token", operator_token,
             *(() if "--default-credit-limit" in options
               else ("--default-credit-limit", "unlimited")), *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=None if env is None else {**os.environ, **env})
        self.log: list[str] = []
        self.target = self._await_listening(timeout)
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _await_listening(self, timeout: float) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            self.log.append(line)
            if m := LISTENING.search(line):
                return m.group(1)
        self.kill()
        raise RuntimeError("the server did not start: " + "".join(self.log).strip())

    def _read_rest(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def text(self) -> str:
        return "".join(self.log)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (a graceful stop), then SIGKILL if it has not ended in ``timeout``;
        returns the exit code once the whole log has been read."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.wait(10)
        self._drain.join(10)
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, for recovery tests."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
