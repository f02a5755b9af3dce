"""The SQLite conversation log and its trio writer, on real files in tmp_path."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from appliance.bench.faults import fill_disk
from appliance.metrics import Metrics
from appliance.store import SCHEMA_VERSION, AsyncStore, Store, StoreError, TurnRecord, transient


def rec(i: int, *, started_at: float | None = None, user: str = "", reply: str = "") -> TurnRecord:
    return TurnRecord(
        session=f"s{i % 3}",
        turn=i,
        started_at=time.time() if started_at is None else started_at,
        user_text=user or f"question {i}",
        reply_text=reply or f"answer {i}",
        outcome="ok",
        endpoint="local",
        timings={"asr": 120.5, "llm_first_token": 180.0, "total": 900.25},
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "log" / "appliance.db")
    s.open()
    return s


def test_round_trip_and_wal(store: Store) -> None:
    r = TurnRecord(
        session="abc",
        turn=3,
        started_at=1_700_000_000.5,
        user_text="When do you open? ünïcode",
        reply_text="At nine.",
        outcome="fallback",
        endpoint=None,
        timings={"tts_first_audio": 110.0},
        had_image=True,
        source="voice",
    )
    row_id = store.add_turn(r)
    assert row_id >= 1
    assert store.recent_turns() == [r]
    # WAL is a property of the file: a second connection sees it.
    with closing(sqlite3.connect(store.path)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.path.with_name("appliance.db-wal").exists()
    store.close()


def test_recent_is_newest_first_and_limited(store: Store) -> None:
    base = 1_700_000_000.0
    store.add_turns([rec(i, started_at=base + i) for i in range(10)])
    assert [r.turn for r in store.recent_turns(limit=3)] == [9, 8, 7]
    store.close()


def test_search_matches_question_or_reply_and_escapes_wildcards(store: Store) -> None:
    store.add_turn(rec(1, user="Where is the CAFE?", reply="Second floor."))
    store.add_turn(rec(2, user="Ticket price", reply="Adults 12%, kids free"))
    store.add_turn(rec(3, user="Toilets", reply="Next to the cafe"))
    store.add_turn(rec(4, user="snake_case", reply="x"))
    assert {r.turn for r in store.search("cafe")} == {1, 3}
    assert [r.turn for r in store.search("12%")] == [2]
    assert store.search("%") == [store.search("12%")[0]]  # literal %, not "match everything"
    assert [r.turn for r in store.search("_")] == [4]
    assert store.search("planetarium") == []
    store.close()


def test_purge_older_than(store: Store) -> None:
    now = 1_700_000_000.0
    day = 86400.0
    store.add_turns([rec(i, started_at=now - i * day - 1) for i in range(5)])  # 0..4 days old
    assert store.purge_older_than(2.5, now=now) == 2  # the 3- and 4-day-old turns
    assert sorted(r.turn for r in store.recent_turns()) == [0, 1, 2]
    with pytest.raises(ValueError):
        store.purge_older_than(-1)
    store.close()


def test_checkpoint_truncates_wal(store: Store) -> None:
    store.add_turns([rec(i) for i in range(50)])
    wal = store.path.with_name("appliance.db-wal")
    assert wal.stat().st_size > 0
    store.checkpoint()
    assert wal.stat().st_size == 0
    store.close()
    reopened = Store(store.path)
    reopened.open()
    assert len(reopened.recent_turns(limit=100)) == 50
    reopened.close()


def test_new_outcome_labels_are_recorded(store: Store) -> None:
    # The turn code may grow outcomes ("no_vision", "truncated", ...): logged, never refused.
    r = TurnRecord("s", 1, 1.0, "q", "a", "brand_new_outcome", None, {}, source="kiosk-cam")
    store.add_turn(r)
    assert store.recent_turns() == [r]
    store.close()


def test_answer_kind_is_stored_and_a_version_2_log_gains_it(tmp_path: Path) -> None:
    """A log written before answer kinds existed opens, keeps its rows, and reads them as ''."""
    import sqlite3

    from appliance.store import _MIGRATIONS

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    conn.executescript(_MIGRATIONS[0] + _MIGRATIONS[1])
    conn.execute(
        "INSERT INTO turns (session, turn, started_at, user_text, reply_text, outcome, endpoint,"
        " timings) VALUES ('s', 1, 1.0, 'q', 'a', 'ok', NULL, '{}')"
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    store = Store(path)
    store.open()
    try:
        [old] = store.recent_turns(5)
        assert old.kind == "" and old.user_text == "q"
        store.add_turns([TurnRecord("s", 2, 2.0, "q2", "a2", "ok", "faq", {}, kind="clarify")])
        assert [r.kind for r in store.recent_turns(5)] == ["clarify", ""]
    finally:
        store.close()


def test_bad_records_are_refused_at_the_caller() -> None:
    with pytest.raises(ValueError, match="outcome"):
        TurnRecord("s", 1, 0.0, "q", "a", "", None, {})
    with pytest.raises(ValueError, match="source"):
        TurnRecord("s", 1, 0.0, "q", "a", "ok", None, {}, source="x" * 100)
    with pytest.raises(ValueError, match="finite"):
        TurnRecord("s", 1, 0.0, "q", "a", "ok", None, {"asr": float("nan")})


def test_corrupt_file_gives_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "appliance.db"
    path.write_bytes(b"this is not a database, just some bytes " * 200)
    with pytest.raises(StoreError, match=r"appliance\.db.*move it aside"):
        Store(path).open()


def test_unwritable_path_gives_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    # Tests may run as root, so a chmod would not stop us; a file where a directory should be does.
    with pytest.raises(StoreError, match=r"afile.*cannot create its directory"):
        Store(blocker / "appliance.db").open()
    with pytest.raises(StoreError, match=r"cannot open"):
        Store(tmp_path).open()  # a directory, not a file


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this software"):
        Store(path).open()


def test_use_before_open_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        Store(tmp_path / "x.db").recent_turns()


async def test_async_flush_writes_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    astore = AsyncStore(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)  # opens the store in the worker thread
        for i in range(25):
            assert astore.log_turn(rec(i))
        await astore.flush()
        assert astore.written == 25
        assert astore.pending == 0
        rows = await trio.to_thread.run_sync(store.recent_turns, 100)
        assert len(rows) == 25
        nursery.cancel_scope.cancel()
    store.close()


async def test_cancel_drains_queued_records(tmp_path: Path) -> None:
    path = tmp_path / "drain.db"
    store = Store(path)
    astore = AsyncStore(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)
        for i in range(40):
            astore.log_turn(rec(i))
        # Shutdown before the writer had a chance to run: the queued turns must still land.
        nursery.cancel_scope.cancel()
    assert astore.written == 40
    assert not astore.log_turn(rec(99))  # the writer is gone: a counted drop, not a silent loss
    assert astore.dropped == 1
    # Checkpointed on the way out (before the owner closes): the WAL is empty.
    assert path.with_name("drain.db-wal").stat().st_size == 0
    store.close()
    check = Store(path)
    check.open()
    assert sorted(r.turn for r in check.recent_turns(limit=100)) == list(range(40))
    check.close()


class CountingStore(Store):
    """A real store that remembers the size of each transaction's batch."""

    batches: list[int]

    def add_turns(self, recs: Sequence[TurnRecord]) -> int:
        self.batches = [*getattr(self, "batches", []), len(recs)]
        return super().add_turns(recs)


async def test_turns_arriving_close_together_share_one_write(
    tmp_path: Path, mock_clock: MockClock
) -> None:
    """`gather_s`: under load one transaction (and one thread hand-over) carries the turns
    that finished within 50 ms of each other, instead of one or two each."""
    store = CountingStore(tmp_path / "g.db")
    astore = AsyncStore(store, gather_s=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)
        astore.log_turn(rec(0))
        await trio.sleep(0.03)  # virtual time
        assert astore.written == 0  # still gathering
        astore.log_turn(rec(1))
        await trio.sleep(0.01)
        astore.log_turn(rec(2))
        await astore.flush()
        assert trio.current_time() <= 0.06  # written when the window closed, not later
        astore.log_turn(rec(3))  # a turn after a quiet spell: a batch of its own
        await astore.flush()
        nursery.cancel_scope.cancel()
    assert store.batches == [3, 1]
    assert sorted(r.turn for r in store.recent_turns(limit=10)) == [0, 1, 2, 3]
    store.close()


async def test_shutdown_while_gathering_loses_no_turn(
    tmp_path: Path, mock_clock: MockClock
) -> None:
    path = tmp_path / "g.db"
    store = Store(path)
    astore = AsyncStore(store, gather_s=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)
        astore.log_turn(rec(0))
        astore.log_turn(rec(1))
        await trio.sleep(0.02)  # the writer holds both, waiting for more
        nursery.cancel_scope.cancel()
    assert astore.written == 2 and astore.pending == 0
    assert sorted(r.turn for r in store.recent_turns(limit=10)) == [0, 1]
    store.close()


async def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    store = Store(tmp_path / "full.db")
    store.open()
    astore = AsyncStore(store, max_pending=3)
    # No writer running yet: the queue fills and further turns are refused at once.
    assert [astore.log_turn(rec(i)) for i in range(5)] == [True, True, True, False, False]
    assert astore.dropped == 2
    with pytest.raises(RuntimeError, match="not running"):
        await astore.flush()
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)
        await astore.flush()
        nursery.cancel_scope.cancel()
    assert astore.written == 3
    store.close()


async def test_write_errors_are_counted_and_the_writer_survives(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    store = Store(path)
    astore = AsyncStore(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)
        astore.log_turn(rec(1))
        await astore.flush()
        # Someone breaks the file underneath us (a real failure, not a mock).
        with closing(sqlite3.connect(path)) as other:
            other.execute("DROP TABLE turns")
        astore.log_turn(rec(2))
        await astore.flush()
        assert (astore.written, astore.failed) == (1, 1)
        nursery.cancel_scope.cancel()
    store.close()


# -- a full disk: kept, retried, nothing lost once there is room --------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, so the disk under the log fills for real (needs root to mount)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here: cannot make a small filesystem to fill")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here (root only): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


fill = fill_disk  # write zeros until the filesystem is full (ENOSPC)


def logged(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as db:
        return sorted(r[0] for r in db.execute("SELECT turn FROM turns"))


async def test_turns_that_meet_a_full_disk_are_written_once_there_is_room(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appliance.store")
    path = small_fs / "appliance.db"
    store = Store(path)
    metrics = Metrics()
    astore = AsyncStore(store, metrics=metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)
        astore.log_turn(rec(0))
        await astore.flush()
        fill(small_fs / "filler")
        for i in range(1, 6):
            astore.log_turn(rec(i))
            await astore.flush()  # one write (and one failure) per turn
        assert logged(path) == [0]  # the disk really is full
        assert (astore.written, astore.retrying, astore.failed) == (1, 5, 0)
        assert "appliance_store_retrying 5.0" in metrics.render().decode()
        (small_fs / "filler").unlink()
        astore.log_turn(rec(6))  # the next write takes the kept turns along, in order
        await astore.flush()
        assert logged(path) == list(range(7))
        assert (astore.written, astore.retrying, astore.failed, astore.dropped) == (7, 0, 0, 0)
        assert "appliance_store_retrying 0.0" in metrics.render().decode()
        nursery.cancel_scope.cancel()
    store.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "write failed" in warnings[0]  # once per episode
    assert any("writing again; 5 turns kept" in r.getMessage() for r in caplog.records)


async def test_kept_turns_are_retried_without_waiting_for_a_new_one(
    small_fs: Path, mock_clock: MockClock
) -> None:
    path = small_fs / "appliance.db"
    store = Store(path)
    astore = AsyncStore(store, retry_s=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)
        astore.log_turn(rec(0))
        await astore.flush()
        fill(small_fs / "filler")
        for i in range(1, 4):
            astore.log_turn(rec(i))
        await astore.flush()
        await trio.sleep(5)  # virtual: retries keep failing while the disk is full
        assert astore.retrying == 3 and logged(path) == [0]
        (small_fs / "filler").unlink()
        t0 = trio.current_time()
        while astore.retrying:
            await trio.sleep(0.05)  # virtual time: waiting for the periodic retry
        assert trio.current_time() - t0 <= 1.1
        assert logged(path) == [0, 1, 2, 3]
        nursery.cancel_scope.cancel()
    store.close()


async def test_beyond_the_bound_newer_turns_are_dropped_and_counted(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = small_fs / "appliance.db"
    store = Store(path)
    metrics = Metrics()
    astore = AsyncStore(store, max_retry=3, metrics=metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(astore.run)
        astore.log_turn(rec(0))
        await astore.flush()
        fill(small_fs / "filler")
        for i in range(1, 6):
            astore.log_turn(rec(i))
            await astore.flush()
        assert (astore.retrying, astore.dropped) == (3, 2)
        assert "appliance_store_dropped_total 2.0" in metrics.render().decode()
        assert any("newer turns dropped" in r.getMessage() for r in caplog.records)
        (small_fs / "filler").unlink()
        astore.log_turn(rec(6))
        await astore.flush()
        nursery.cancel_scope.cancel()
    store.close()
    assert logged(path) == [0, 1, 2, 3, 6]  # the oldest kept, in order


def test_only_errors_that_can_pass_are_retried(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "t.db")) as db:
        with pytest.raises(sqlite3.OperationalError) as missing:
            db.execute("INSERT INTO nowhere VALUES (1)")
    assert not transient(missing.value)  # a broken schema fails the same way every time
    assert not transient(StoreError("not open"))


# -- deleted text leaves the files ------------------------------------------------------------


def raw_bytes(store: Store) -> bytes:
    """Everything SQLite keeps on disk for this log: the database, its WAL and shared memory."""
    files = [store.path, *(store.path.with_name(store.path.name + s) for s in ("-wal", "-shm"))]
    return b"".join(f.read_bytes() for f in files if f.exists())


SECRET = "my card number is 4111-VISITOR-SECRET"


def old_and_new_turns(store: Store, now: float) -> None:
    old = now - 40 * 86400
    store.add_turns([rec(i, started_at=old, user=f"{SECRET} #{i}") for i in range(50)])
    store.add_turns([rec(100 + i, started_at=now, user=f"kept question {i}") for i in range(5)])


@pytest.mark.parametrize("checkpointed_first", [False, True], ids=["in-wal", "in-db-file"])
def test_purged_text_leaves_no_trace_on_disk(store: Store, checkpointed_first: bool) -> None:
    now = time.time()
    old_and_new_turns(store, now)
    if checkpointed_first:
        store.checkpoint()  # the rows now live in the main file's pages, not in the WAL
    assert SECRET.encode() in raw_bytes(store)  # the scan does find text that is there
    assert store.purge_older_than(30, now=now) == 50
    data = raw_bytes(store)
    assert SECRET.encode() not in data
    assert b"4111-VISITOR" not in data
    assert b"kept question 3" in data  # the retained turns are untouched
    assert len(store.recent_turns()) == 5
    store.close()
    assert SECRET.encode() not in raw_bytes(store)


def test_deleted_session_leaves_no_trace_on_disk(store: Store) -> None:
    store.add_turn(rec(1, user=f"{SECRET} once"))
    store.checkpoint()
    store.add_turn(rec(2, user="another visitor"))  # session s2
    assert store.delete_turns("s1") == 1
    assert SECRET.encode() not in raw_bytes(store)
    assert store.delete_turns(None) == 1
    assert b"another visitor" not in raw_bytes(store)
    store.close()


def test_secure_delete_is_what_clears_the_db_file(store: Store) -> None:
    # Some SQLite builds (Debian's) default to secure_delete; the store sets it on any build.
    # The control: with it off, the same purge leaves the text in the file's free space.
    conn = store._connection()
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    conn.execute("PRAGMA secure_delete = OFF")
    now = time.time()
    old_and_new_turns(store, now)
    store.checkpoint()
    assert store.purge_older_than(30, now=now) == 50
    assert SECRET.encode() in raw_bytes(store)
    store.close()


def test_retention_purges_audit_rows(store: Store) -> None:
    for i in range(3):
        store.add_audit("-", f"192.0.2.{i}", "login_refused", "locked_out")
    conn = store._connection()
    conn.execute("UPDATE audit SET at = at - 40 * 86400 WHERE remote != '192.0.2.2'")
    store.add_audit("admin", "127.0.0.1", "login")
    assert store.purge_older_than(30) == 0  # no turns, but two old audit rows
    assert [(a["remote"], a["action"]) for a in store.recent_audit()] == [
        ("127.0.0.1", "login"),
        ("192.0.2.2", "login_refused"),
    ]
    assert b"192.0.2.0" not in raw_bytes(store)
    store.close()


def test_audit_rows_are_bounded(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db", max_audit_rows=250)
    store.open()
    for i in range(1000):  # a login flood: one row per refusal
        store.add_audit("-", "192.0.2.7", "login_refused", f"#{i}")
    rows = store.recent_audit(limit=10_000)
    assert 250 <= len(rows) < 350  # trimmed every 100th insert
    assert rows[0]["detail"] == "#999" and rows[-1]["detail"] == f"#{1000 - len(rows)}"
    store.close()
