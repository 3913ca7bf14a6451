"""The journal as segments: it rolls over, segments wholly before the oldest kept snapshot
are retired (removed, archived or kept), and recovery and the replay tool still reach
the live state; a graceful stop takes a snapshot; an idle venue's journal stays still;
a data directory written by an earlier spotex is refused, never misread."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest
from conftest import OPERATOR_TOKEN, serving
from test_durability import Clock, apply, drive, orders

from spotex import JournalError
from spotex._core import journal_segments, read_journal, replay_journal
from spotex.client import Client
from spotex.server.host import ARCHIVE, FORMAT_FILE, JOURNAL, LEGACY_JOURNAL, SNAPSHOTS, EngineHost
from spotex.server.replay import rebuild, verify

KINDS = ["bid", "bid", "ask", "ask", "cancel", "amend", "tick"]


def _plan(n: int, seed: int) -> list[tuple[str, int, int, int, int]]:
    rng = random.Random(seed)
    return [(rng.choice(KINDS), rng.randint(1, 3), rng.randint(-4, 4), rng.randint(1, 16),
             rng.randrange(10**6)) for _ in range(n)]


def _run(d: Path, retention: str) -> tuple[str, int, list[bytes]]:
    gw = EngineHost(clock=Clock(), data_dir=d, fsync="none", snapshot_every=60,
                 segment_bytes=2048, retention=retention, snapshot_per_resting=0)
    drive(gw, [])
    plan = _plan(500, seed=5)
    for lo in range(0, len(plan), 25):  # writer rounds: snapshots fall due between them
        gw.call(lambda lo=lo: apply(gw, plan[lo:lo + 25]))
    live = gw.call(gw.state_hash)
    listed = gw.call(lambda: orders(gw))
    seq = gw.sequence
    gw.close()
    return live, seq, listed


def _snapshot_seqs(d: Path) -> list[int]:
    return [int(p.stem.split("-")[1]) for p in sorted((d / SNAPSHOTS).glob("snapshot-*.bin"))]


def test_retired_segments_leave_recovery_and_replay_whole(tmp_path: Path) -> None:
    d = tmp_path / "data"
    live, seq, listed = _run(d, "delete")
    segments = journal_segments(d / JOURNAL)
    snaps = _snapshot_seqs(d)
    assert len(snaps) == 3 and len(segments) >= 2, (snaps, segments)
    oldest = snaps[0]
    # everything after the oldest kept snapshot is kept, and nothing wholly before it
    assert segments[0][0] > 1 and segments[0][0] <= oldest + 1
    assert len(segments) == 1 or segments[1][0] > oldest + 1

    back = EngineHost(data_dir=d, fsync="none")
    assert back.call(back.state_hash) == live and back.sequence == seq
    assert back.call(lambda: orders(back)) == listed
    back.close()

    # the replay tool starts from the oldest snapshot the journal continues
    r = rebuild(d)
    assert (r.start, r.sequence, r.state_hash) == (oldest, seq, live)
    results = verify(d)
    assert [s for s, *_ in results] == snaps and all(ok for *_, ok in results)
    assert results[0][2] == "(journal retired)"
    with pytest.raises(JournalError, match="retired"):
        rebuild(d, until_seq=1)
    with pytest.raises(JournalError, match="past the end"):
        rebuild(d, until_seq=seq + 1)

    # with the newest snapshot damaged, recovery falls back to an older one and the
    # journal still reaches the same state
    newest = sorted((d / SNAPSHOTS).glob("snapshot-*.bin"))[-1]
    body = bytearray(newest.read_bytes())
    body[len(body) // 2] ^= 0xFF
    newest.write_bytes(bytes(body))
    again = EngineHost(data_dir=d, fsync="none")
    assert again.call(again.state_hash) == live
    assert again.recovery["snapshot_seq"] < snaps[-1]
    again.close()


def test_archive_moves_segments_and_keep_keeps_them(tmp_path: Path) -> None:
    live, seq, _ = _run(tmp_path / "a", "archive")
    archived, _ = read_journal(tmp_path / "a" / ARCHIVE)
    kept, _ = read_journal(tmp_path / "a" / JOURNAL)
    assert archived[0][0] == 1 and archived[-1][0] + 1 == kept[0][0] and kept[-1][0] == seq

    live_k, seq_k, _ = _run(tmp_path / "k", "keep")
    assert (live_k, seq_k) == (live, seq)
    segments = journal_segments(tmp_path / "k" / JOURNAL)
    assert segments[0][0] == 1 and len(segments) > 3
    engine, last, _, replayed_hash = replay_journal(tmp_path / "k" / JOURNAL)
    assert (last, replayed_hash) == (seq, live)
    assert rebuild(tmp_path / "k").start == 0


def test_data_of_an_earlier_format_is_refused_never_misread(tmp_path: Path) -> None:
    d = tmp_path / "data"
    gw = EngineHost(clock=Clock(), data_dir=d, fsync="none")
    drive(gw, _plan(30, seed=2))
    gw.close()
    assert (d / FORMAT_FILE).exists()
    # what an earlier spotex left: a journal and snapshots, but no format marker
    (d / FORMAT_FILE).unlink()
    for opener in (lambda: EngineHost(data_dir=d, fsync="none"), lambda: rebuild(d)):
        with pytest.raises(JournalError, match="earlier spotex"):
            opener()
    shutil.rmtree(d / JOURNAL)
    (d / LEGACY_JOURNAL).write_bytes(b"x")  # the single-file layout of before
    with pytest.raises(JournalError, match="earlier spotex"):
        EngineHost(data_dir=d, fsync="none")
    # an empty directory is new: it is marked and served
    fresh = tmp_path / "fresh"
    EngineHost(data_dir=fresh, fsync="none").close()
    assert (fresh / FORMAT_FILE).read_text().startswith("spotex-data ")


def test_an_idle_venue_journals_nothing(tmp_path: Path) -> None:
    gw = EngineHost(clock=Clock(), data_dir=tmp_path, fsync="none")
    drive(gw, [])
    before = gw.sequence
    for _ in range(50):
        gw.call(gw.advance_time)  # nothing falls due
    assert gw.sequence == before
    gw.close()
    assert read_journal(tmp_path / JOURNAL)[0][-1][0] == before


def test_a_graceful_stop_takes_a_snapshot(tmp_path: Path) -> None:
    with serving(tmp_path) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        h = int(time.time()) // 3600 + 3
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=h,
                                 to_hour=h + 1)[0].product_id
        buyer = Client(r.target, op.create_account("b", ["buyer"]).token)
        for i in range(5):
            buyer.place_order(pid, "buy", "1.00", 1 + i)
        seq, live = op.state_hash()
    assert _snapshot_seqs(tmp_path)[-1] == seq
    back = EngineHost(data_dir=tmp_path, fsync="none")
    assert back.recovery["replayed"] == 0 and back.call(back.state_hash) == live
    back.close()
