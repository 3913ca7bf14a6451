"""A real spotex server on a free loopback port, run on its own event-loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spotex.server import Server

OPERATOR_TOKEN = "test-operator-token"


@dataclass
class Running:
    server: Server
    target: str
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data_dir: Path = tmp_path_factory.mktemp("spotex-data")
    loop = asyncio.new_event_loop()
    started: dict[str, Server] = {}
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            started["s"] = await Server.start("127.0.0.1:0", data_dir, OPERATOR_TOKEN,
                                              tick_seconds=0.2)
            ready.set()
        loop.run_until_complete(boot())
        loop.run_forever()

    t = threading.Thread(target=main, daemon=True)
    t.start()
    assert ready.wait(20), "server did not start"
    server = started["s"]
    yield Running(server, f"127.0.0.1:{server.port}", loop)
    asyncio.run_coroutine_threadsafe(server.stop(0.5), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)
