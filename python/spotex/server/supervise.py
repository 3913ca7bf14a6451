"""A supervisor of child processes: it watches each (``Watched``: how to find its
process, how to start it again), logs each exit (which process, its pid, its exit code or
signal), and starts a dead one again. A process that keeps dying is started again after
0.5 s, then 1, 2, 4, 8 and 10 s at most; once it has run for 30 s the wait is 0.5 s
again. Nothing is started once the supervisor stops, so what it stops stays stopped.
Used by ``spotex cluster up`` (NATS servers, engines) and by a server's market-data
relays."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

FIRST_WAIT = 0.5  # seconds before a dead process is started again
LONGEST_WAIT = 10.0  # the wait doubles each time it dies again, up to this
STABLE = 30.0  # a process that ran this long before dying is started after FIRST_WAIT


@dataclass
class Watched:
    """One process: ``proc()`` its current process (None: not ours to watch now),
    ``start()`` starts it again."""

    name: str
    proc: Callable[[], subprocess.Popen[bytes] | None]
    start: Callable[[], None]
    started: float = 0.0  # when it was last started (the supervisor's clock)
    wait: float = FIRST_WAIT  # before the next start, once it is dead
    due: float | None = None  # when it is started again (it is dead)
    restarts: int = 0


def _exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor(Collector):
    """Watches ``watched`` on a thread of its own (``start``, then ``stop``), looking
    every ``poll`` seconds. Also a Prometheus collector of its restarts."""

    def __init__(self, watched: list[Watched], *, first_wait: float = FIRST_WAIT,
                 longest_wait: float = LONGEST_WAIT, stable: float = STABLE,
                 poll: float = 0.2, clock: Callable[[], float] = time.monotonic) -> None:
        self.watched = watched
        self.first_wait, self.longest_wait, self.stable = first_wait, longest_wait, stable
        self.poll = poll
        self.clock = clock
        now = clock()
        for w in watched:
            w.started, w.wait = now, first_wait
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a start and the stop never overlap
        self._thread: threading.Thread | None = None

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """No process is started again from now (one being started when this is called
        is started first, for the caller to stop with the others)."""
        with self._lock:
            self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stopping.wait(self.poll):
            self.check()

    def check(self) -> None:
        """One look at every process: a death is logged and its start scheduled; a
        start that is due is made."""
        for w in self.watched:
            with self._lock:
                if self._stopping.is_set():
                    return
                self._check(w)

    def _check(self, w: Watched) -> None:
        now = self.clock()
        proc = w.proc()
        if w.due is None:
            if proc is None or (code := proc.poll()) is None:
                return
            ran = now - w.started
            if ran >= self.stable:
                w.wait = self.first_wait
            w.due = now + w.wait
            log.warning("%s (pid %d) %s after %.1f s; starting it again in %g s", w.name,
                        proc.pid, _exit(code), ran, w.wait)
            return
        if now < w.due:
            return
        try:
            w.start()
        except OSError as err:
            log.error("%s could not be started again: %s", w.name, err)
            w.due = now + w.wait
            w.wait = min(w.wait * 2, self.longest_wait)
            return
        w.started, w.due = now, None
        w.restarts += 1
        w.wait = min(w.wait * 2, self.longest_wait)
        started = w.proc()
        log.warning("%s started again (pid %s; restart %d)", w.name,
                    started.pid if started else "?", w.restarts)

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "spotex_cluster_restarts", "Times `spotex cluster up` started a dead process "
            "again, by process.", labels=["process"])
        up = GaugeMetricFamily("spotex_cluster_process_up", "1 while the process runs, "
                               "0 while it is dead.", labels=["process"])
        with self._lock:  # not while a process is being started
            for w in self.watched:
                restarts.add_metric([w.name], w.restarts)
                up.add_metric([w.name], 0 if w.due is not None or w.proc() is None else 1)
        yield restarts
        yield up
