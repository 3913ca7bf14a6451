"""A sharded, replicated venue on one machine (``spotex cluster up``): engine processes,
a leader and standbys per shard, each journaling to its shard's stream on NATS
JetStream, for a shard gateway to route to. The gateway runs where this is called."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from spotex.cluster.nats import free_port
from spotex.cluster.routes import ShardSpec
from spotex.server.logs import LISTENING


class EngineError(RuntimeError):
    """An engine that did not start; the message ends with what it logged."""


class Engine:
    """``spotex serve`` in a process of its own (it can be SIGKILLed), its log in a file,
    its tokens in its environment (not on its command line)."""

    def __init__(self, data: Path, listen: str, env: dict[str, str], *options: str,
                 credit: str = "unlimited") -> None:
        self.data = data
        self.target = listen
        self.log = data.with_suffix(".log")
        data.parent.mkdir(parents=True, exist_ok=True)
        # ``credit``: the engine's --default-credit-limit, 0 or unlimited (money not
        # checked); any other default would give every account credit once per shard
        self.options = (sys.executable, "-m", "spotex.cli", "serve", "--listen", listen,
                        "--data-dir", str(data), "--no-access-log",
                        "--default-credit-limit", credit, *options)
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.options, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)

    def wait_listening(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if LISTENING.search(self.text()):
                return
            if self.proc is None or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise EngineError(f"the engine at {self.target} did not start: "
                          + self.text()[-2000:].strip())

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def auction_options(schedule: str, hold: str) -> tuple[str, ...]:
    """The engines' auction settings under a gateway: no schedule of their own (the
    gateway's gate runs every shard's auction under one id: set here, whatever the
    environment says), and the hold of the venue (``auto``: on when the gateway has a
    schedule, as an engine's own auto is with its own)."""
    held = hold == "on" or (hold == "auto" and bool(schedule))
    return ("--auction-schedule", "", "--auction-hold", "on" if held else "off")


@dataclass
class Shards:
    """``shards`` shards of ``1 + standbys`` engines each on the NATS servers ``urls``:
    shard i writes the stream ``spotex-s<i>`` (``stream``: another prefix than s) and
    numbers its ids from ``i << 48``.
    Engine k of shard i listens on ``port + 10 i + k`` (free ports when ``port`` is 0)
    with its data under ``base/shard<i>-<k>``; the first of each shard starts first, so
    it takes the lease and leads."""

    base: Path
    urls: list[str]
    gateway_token: str
    operator_token: str = ""
    shards: int = 2
    standbys: int = 1
    port: int = 0
    replicas: int = 3
    lease_seconds: float = 3.0
    stream: str = "s"  # shard i writes the stream spotex-<stream><i>
    options: tuple[str, ...] = ()  # more `spotex serve` options for every engine
    # the engines' --default-credit-limit: "0" (buyers need money deposited) or
    # "unlimited" (money not checked); credit per account is set on its home shard
    credit: str = "unlimited"
    engines: dict[int, list[Engine]] = field(default_factory=dict)

    def start(self, timeout: float = 60.0) -> Shards:
        env = {"SPOTEX_GATEWAY_TOKEN": self.gateway_token,
               "SPOTEX_OPERATOR_TOKEN": self.operator_token}
        try:
            for i in range(1, self.shards + 1):
                self.engines[i] = []
                for k in range(self.standbys + 1):
                    port = self.port + 10 * i + k if self.port else free_port()
                    e = Engine(self.base / f"shard{i}-{k}", f"127.0.0.1:{port}", env,
                               "--journal-nats", ",".join(self.urls),
                               "--shard", f"{self.stream}{i}",
                               "--shard-index", str(i), "--replicas", str(self.replicas),
                               "--lease-seconds", str(self.lease_seconds), *self.options,
                               credit=self.credit)
                    self.engines[i].append(e)
                    e.wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def specs(self) -> list[ShardSpec]:
        return [ShardSpec(i, tuple(e.target for e in es)) for i, es in self.engines.items()]

    def stop(self) -> None:
        """Standbys first, so that none takes over from a leader stopping."""
        for es in self.engines.values():
            for e in reversed(es):
                e.stop()
