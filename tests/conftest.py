"""Real spotex servers on free loopback ports, each run on its own event-loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from spotex.server.ledger import UNCHECKED
from spotex.server.service import Server

OPERATOR_TOKEN = "test-operator-token"


@dataclass
class Running:
    server: Server
    target: str
    loop: asyncio.AbstractEventLoop


S = TypeVar("S")


@contextlib.contextmanager
def on_thread(start: Callable[[], Awaitable[S]], stop: Callable[[S], Awaitable[None]]
              ) -> Iterator[tuple[S, asyncio.AbstractEventLoop]]:
    """What ``start`` starts, run on its own event-loop thread until ``stop``."""
    loop = asyncio.new_event_loop()
    started: list[S] = []
    failed: list[BaseException] = []
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            try:
                started.append(await start())
            except BaseException as err:  # noqa: BLE001 - reported to the test
                failed.append(err)
            ready.set()
        loop.run_until_complete(boot())
        if not failed:
            loop.run_forever()

    t = threading.Thread(target=main, daemon=True)
    t.start()
    assert ready.wait(30), "did not start"
    if failed:
        raise failed[0]
    try:
        yield started[0], loop
    finally:
        asyncio.run_coroutine_threadsafe(stop(started[0]), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)


@contextlib.contextmanager
def serving(data_dir: Path, **options: Any) -> Iterator[Running]:
    """``Server.start`` on 127.0.0.1:0 in a thread; stops it on exit. Money is not checked
    (no deposits needed to buy) unless the test passes ``money``."""
    options.setdefault("money", UNCHECKED)
    with on_thread(lambda: Server.start("127.0.0.1:0", data_dir, OPERATOR_TOKEN, **options),
                   lambda s: s.stop(0.5)) as (server, loop):
        yield Running(server, f"127.0.0.1:{server.port}", loop)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serving(tmp_path_factory.mktemp("spotex-data"), tick_seconds=0.2) as r:
        yield r


class Collector:
    """Drains a stream on a thread into a list."""

    def __init__(self, it: Iterator[Any]) -> None:
        self.items: list[Any] = []
        self._it = it
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            for x in self._it:
                self.items.append(x)
        except Exception:  # noqa: BLE001 - the stream ends when the test closes the client
            pass

    def wait_for(self, pred: Callable[[list[Any]], bool], timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self.items):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out; have {self.items}")
