"""Conversation log in SQLite (WAL), and a trio adapter that keeps disk I/O off the turn path.

`Store` is plain blocking code (one connection, one thread at a time). `AsyncStore` owns a
bounded queue and a single writer task that hands batches to a worker thread, so a slow or full
disk never costs a late reply. A write that fails for a reason that can pass (disk full, I/O
error, a lock held too long) is kept in memory, bounded, and retried with the next write and
every `retry_s`, so the turns of a disk-full episode land once there is room again; beyond the
bound they are dropped (counted, logged).

Deleted visitor text does not linger: `secure_delete` zeroes deleted rows in their pages (and
in pages put on the free list), and every purge or deletion ends with a TRUNCATE checkpoint,
so older copies of those pages leave the WAL too. The audit log (one row per refused login,
among others: attacker-paid disk) is kept to the same retention and to `max_audit_rows`.

One module (~550 lines): the schema, its queries and migrations change together.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = [
    "OUTCOMES",
    "SCHEMA_VERSION",
    "SOURCES",
    "AsyncStore",
    "Store",
    "StoreError",
    "TurnRecord",
    "transient",
]

log = logging.getLogger(__name__)

# The usual values; the log accepts any short label so that a new outcome in the turn code is
# recorded rather than turned into a failed turn.
OUTCOMES = frozenset(
    {"ok", "fallback", "truncated", "cancelled", "interrupted", "blocked", "no_vision", "error"}
)
SOURCES = frozenset({"text", "voice"})


class StoreError(Exception):
    """The conversation log cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class TurnRecord:
    session: str
    turn: int
    started_at: float  # unix time
    user_text: str
    reply_text: str
    outcome: str  # usually one of OUTCOMES
    endpoint: str | None
    timings: Mapping[str, float]  # ms per stage, stored as JSON
    had_image: bool = False
    source: str = "text"  # usually one of SOURCES
    kind: str = ""  # how the answer was made: faq, clarify, decline, chat, llm, say_again

    def __post_init__(self) -> None:
        # Reject rows that could never be written here, at the caller (a bug there), rather
        # than as a failed write in the worker thread.
        for name in ("outcome", "source"):
            label = getattr(self, name)
            if not isinstance(label, str) or not label.strip() or len(label) > 40:
                raise ValueError(f"{name} must be a short non-empty label, got {label!r}")
        timings = {str(k): float(v) for k, v in self.timings.items()}
        bad = [k for k, v in timings.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"timings must be finite numbers: {bad}")
        # A private copy: the caller may reuse its dict.
        object.__setattr__(self, "timings", timings)


# Each entry migrates from version i to i+1; PRAGMA user_version records how far a file got.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE turns (
        id          INTEGER PRIMARY KEY,
        session     TEXT    NOT NULL,
        turn        INTEGER NOT NULL,
        started_at  REAL    NOT NULL,
        user_text   TEXT    NOT NULL,
        reply_text  TEXT    NOT NULL,
        outcome     TEXT    NOT NULL,
        endpoint    TEXT,
        timings     TEXT    NOT NULL,
        had_image   INTEGER NOT NULL DEFAULT 0,
        source      TEXT    NOT NULL DEFAULT 'text'
    );
    CREATE INDEX turns_started_at ON turns (started_at);
    CREATE INDEX turns_session ON turns (session, turn);
    """,
    # 2: the admin page's account (one row per user name) and its audit log.
    """
    CREATE TABLE admin_accounts (
        username    TEXT    PRIMARY KEY,
        pw_hash     TEXT    NOT NULL,
        created_at  REAL    NOT NULL,
        updated_at  REAL    NOT NULL
    );
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      REAL    NOT NULL,
        actor   TEXT    NOT NULL,
        remote  TEXT    NOT NULL,
        action  TEXT    NOT NULL,
        detail  TEXT    NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_at ON audit (at);
    """,
    # 3: how each answer was made (the answer policy's kind); '' for turns logged before.
    """
    ALTER TABLE turns ADD COLUMN kind TEXT NOT NULL DEFAULT '';
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_COLUMNS = (
    "session, turn, started_at, user_text, reply_text, outcome, endpoint, timings, "
    "had_image, source, kind"
)
_MARKS = ", ".join("?" * len(_COLUMNS.split(",")))


def _row(rec: TurnRecord) -> tuple[Any, ...]:
    return (
        rec.session,
        rec.turn,
        rec.started_at,
        rec.user_text,
        rec.reply_text,
        rec.outcome,
        rec.endpoint,
        json.dumps(rec.timings, allow_nan=False),
        int(rec.had_image),
        rec.source,
        rec.kind,
    )


def _record(row: Sequence[Any]) -> TurnRecord:
    return TurnRecord(
        session=row[0],
        turn=row[1],
        started_at=row[2],
        user_text=row[3],
        reply_text=row[4],
        outcome=row[5],
        endpoint=row[6],
        timings=json.loads(row[7]),
        had_image=bool(row[8]),
        source=row[9],
        kind=row[10],
    )


# SQLite result codes (and their extended forms, e.g. SQLITE_IOERR_WRITE) that say nothing about
# the rows: they can pass by themselves, so the write is worth trying again.
_TRANSIENT = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED")


def transient(exc: BaseException) -> bool:
    """True for a write error worth retrying (disk full, I/O error, locked); False for one that
    would fail the same way again (a broken schema, a closed store). Pure."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    return isinstance(exc, sqlite3.OperationalError) and name.startswith(_TRANSIENT)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Store:
    """Blocking SQLite conversation log. Call from one thread at a time (AsyncStore does)."""

    def __init__(self, path: Path, *, max_audit_rows: int = 10_000) -> None:
        self.path = Path(path)
        self.max_audit_rows = max_audit_rows
        self._conn: sqlite3.Connection | None = None
        # Belt and braces: the connection is shared across worker threads (check_same_thread=False)
        # and a direct caller (CLI, admin) might not go through AsyncStore's limiter.
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def open(self) -> None:
        """Open (creating the file, its directory and the schema as needed) in WAL mode."""
        if self._conn is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"conversation log {self.path}: cannot create its directory "
                f"({exc.strerror or exc}); check store.path in the config"
            ) from exc
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(
                f"conversation log {self.path}: cannot open ({exc}); "
                "check that the path is a writable file"
            ) from exc
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("conversation log %s: journal_mode is %s, not WAL", self.path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            # Deleted text is overwritten with zeros, not left in free space or free pages.
            conn.execute("PRAGMA secure_delete = ON")
            self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"conversation log {self.path}: not usable ({exc}); if the file is corrupt, "
                "move it aside and a new log is created"
            ) from exc
        except StoreError:
            conn.close()
            raise
        self._conn = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"conversation log {self.path}: schema version {version} is newer than this "
                f"software understands ({SCHEMA_VERSION}); upgrade the appliance or move the file"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("conversation log %s: schema migrated to version %d", self.path, target)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"conversation log {self.path} is not open")
        return self._conn

    def add_turn(self, rec: TurnRecord) -> int:
        """Insert one turn; returns its row id. Blocking (fsync at checkpoints only: WAL+NORMAL)."""
        with self._lock:
            cur = self._connection().execute(
                f"INSERT INTO turns ({_COLUMNS}) VALUES ({_MARKS})",
                _row(rec),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def add_turns(self, recs: Sequence[TurnRecord]) -> int:
        """Insert several turns in one transaction (the writer's batches); returns the count."""
        if not recs:
            return 0
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                conn.executemany(
                    f"INSERT INTO turns ({_COLUMNS}) VALUES ({_MARKS})",
                    [_row(r) for r in recs],
                )
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (it can on SQLITE_FULL/IOERR/BUSY); a
                # second ROLLBACK would raise and hide the error that says why.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return len(recs)

    def recent_turns(self, limit: int = 50) -> list[TurnRecord]:
        """The newest turns, newest first."""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    f"SELECT {_COLUMNS} FROM turns ORDER BY started_at DESC, id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [_record(r) for r in rows]

    def search(self, text: str, limit: int = 100) -> list[TurnRecord]:
        """Turns whose question or reply contains `text` (case-insensitive for ASCII), newest
        first. `%` and `_` are literal."""
        return self.turns_between(text, None, limit)

    def purge_older_than(self, days: float, now: float | None = None) -> int:
        """Delete turns, and audit rows, from more than `days` ago (retention), then checkpoint
        so that the deleted text leaves the WAL as well; returns how many turns."""
        if days < 0 or not math.isfinite(days):
            raise ValueError(f"days must be a finite number >= 0, got {days}")
        cutoff = (time.time() if now is None else now) - days * 86400.0
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                turns = conn.execute("DELETE FROM turns WHERE started_at < ?", (cutoff,)).rowcount
                audit = conn.execute("DELETE FROM audit WHERE at < ?", (cutoff,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if turns or audit:
                self._checkpoint_locked()
        if audit:
            log.info("conversation log: %d audit rows older than %g days deleted", audit, days)
        return turns

    def turns_between(
        self, text: str = "", since: float | None = None, limit: int = 10_000
    ) -> list[TurnRecord]:
        """Turns matching `text` (empty = all) started at or after `since`, newest first; the
        admin page's list and export."""
        pattern = _like_pattern(text)
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    f"SELECT {_COLUMNS} FROM turns "
                    "WHERE (user_text LIKE ?1 ESCAPE '\\' OR reply_text LIKE ?1 ESCAPE '\\') "
                    "AND started_at >= ?2 ORDER BY started_at DESC, id DESC LIMIT ?3",
                    (pattern, -math.inf if since is None else since, limit),
                )
                .fetchall()
            )
        return [_record(r) for r in rows]

    def delete_turns(self, session: str | None = None) -> int:
        """Delete one session's turns, or every turn when `session` is None; returns how many."""
        with self._lock:
            conn = self._connection()
            if session is None:
                cur = conn.execute("DELETE FROM turns")
            else:
                cur = conn.execute("DELETE FROM turns WHERE session = ?", (session,))
            if cur.rowcount:
                self._checkpoint_locked()  # the deleted text leaves the WAL now
            return cur.rowcount

    def count_turns(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM turns").fetchone()[0])

    # -- admin accounts and audit log -----------------------------------------------------------

    def admin_hash(self, username: str = "admin") -> str | None:
        """The stored password hash (argon2 encoded string), or None before first-run setup."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT pw_hash FROM admin_accounts WHERE username = ?", (username,))
                .fetchone()
            )
        return None if row is None else str(row[0])

    def set_admin_hash(self, pw_hash: str, username: str = "admin", *, create: bool) -> bool:
        """Store a hash. create=True only inserts (False when the account exists already, so two
        racing first-run setups cannot both win); create=False updates an existing account."""
        now = time.time()
        with self._lock:
            conn = self._connection()
            if create:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO admin_accounts VALUES (?, ?, ?, ?)",
                    (username, pw_hash, now, now),
                )
            else:
                cur = conn.execute(
                    "UPDATE admin_accounts SET pw_hash = ?, updated_at = ? WHERE username = ?",
                    (pw_hash, now, username),
                )
            return cur.rowcount == 1

    def add_audit(self, actor: str, remote: str, action: str, detail: str = "") -> None:
        """Append an audit row; beyond `max_audit_rows` the oldest go (checked every 100th)."""
        with self._lock:
            conn = self._connection()
            cur = conn.execute(
                "INSERT INTO audit (at, actor, remote, action, detail) VALUES (?, ?, ?, ?, ?)",
                (time.time(), actor, remote, action, detail),
            )
            row_id = cur.lastrowid or 0
            if row_id % 100 == 0 and row_id > self.max_audit_rows:
                # A new row's id is max(id) + 1, so ids follow insertion: a range on the key.
                conn.execute("DELETE FROM audit WHERE id <= ?", (row_id - self.max_audit_rows,))

    def recent_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first: {at, actor, remote, action, detail}."""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT at, actor, remote, action, detail FROM audit "
                    "ORDER BY at DESC, id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        keys = ("at", "actor", "remote", "action", "detail")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (shutdown, backups, deletions)."""
        with self._lock:
            self._checkpoint_locked()

    def _checkpoint_locked(self) -> None:
        busy, _, _ = self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning(
                "conversation log %s: checkpoint blocked by another reader; deleted text stays "
                "in the WAL until the next one",
                self.path,
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class AsyncStore:
    """Thin trio adapter: one worker thread at a time (CapacityLimiter(1)), a bounded queue so a
    slow disk never blocks a turn. Call `log_turn` and `flush` from the trio thread.

    A batch whose write fails transiently (`transient`) is kept, up to `max_retry` turns in
    arrival order, and written before the next batch, or after `retry_s` when nothing new
    comes; turns beyond the bound are dropped (the oldest are kept: the log of an outage has
    no hole at its start). `metrics`, when given, gets the kept count and the drops."""

    def __init__(
        self,
        store: Store,
        max_pending: int = 1000,
        drain_timeout: float = 5.0,
        max_batch: int = 100,
        *,
        max_retry: int = 1000,
        retry_s: float = 1.0,
        gather_s: float = 0.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        # After the first queued turn, wait this long for more before writing: under load one
        # transaction and one thread hand-over then carry several turns.
        self._gather_s = gather_s
        self._send, self._recv = trio.open_memory_channel[TurnRecord](max_pending)
        self._limiter = trio.CapacityLimiter(1)
        self._drain_timeout = drain_timeout
        self._max_batch = max_batch
        self._max_retry = max_retry
        self._retry_s = retry_s
        self._metrics = metrics
        self._enqueued = 0
        self._processed = 0  # written, failed, or kept for a retry
        self._progress = trio.Event()
        self._running = False
        self._batch: list[TurnRecord] = []  # taken from the queue, not yet written
        self._kept: deque[TurnRecord] = deque()  # failed transiently: written before the next
        self._kept_since = 0.0  # trio time of the failure that started the current episode
        self._episode_dropped = 0
        self.dropped = 0  # refused (queue full, writer stopped) or beyond max_retry
        self.failed = 0  # accepted but never written (a lasting error, or unwritten at shutdown)
        self.written = 0

    @property
    def pending(self) -> int:
        return self._enqueued - self._processed

    @property
    def retrying(self) -> int:
        """Turns whose write failed transiently, kept in memory for the next try."""
        return len(self._kept)

    def log_turn(self, rec: TurnRecord) -> bool:
        """Queue a turn without blocking; False (and a counted drop) when the queue is full."""
        try:
            self._send.send_nowait(rec)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "conversation log: %d turns dropped (queue full or writer stopped)",
                    self.dropped,
                )
            return False
        self._enqueued += 1
        return True

    async def flush(self) -> None:
        """Wait until everything queued so far is written, has failed, or is kept for a retry.
        Needs run()."""
        target = self._enqueued
        while self._processed < target:
            if not self._running:
                raise RuntimeError("AsyncStore.run() is not running; nothing will be written")
            await self._progress.wait()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task (use nursery.start). Opens the store if needed; on cancellation it
        writes what is queued or kept (shielded, at most drain_timeout) and checkpoints."""
        if not self.store.is_open:
            await trio.to_thread.run_sync(self.store.open, limiter=self._limiter)
        self._running = True
        task_status.started()
        try:
            while True:
                # Taken turns are in self._batch from the moment they leave the queue: if
                # cancellation arrives while gathering or before the worker thread starts, the
                # drain writes them; a write already running in the thread finishes (threads
                # are not abandoned) and clears it.
                try:
                    await self._next_batch()
                except trio.EndOfChannel:
                    break
                await self._write(self._batch)
                self._batch = []
        finally:
            self._running = False
            with trio.CancelScope(shield=True):
                await self._drain()

    async def _next_batch(self) -> None:
        """Up to max_batch queued turns into self._batch, gathered for up to gather_s after
        the first; none (a retry of the kept ones) once retry_s passed without a new turn
        while some are kept."""
        batch = self._batch = []
        if self._kept:
            with trio.move_on_after(self._retry_s):
                batch.append(await self._recv.receive())
        else:
            batch.append(await self._recv.receive())
        if batch and self._gather_s > 0:
            with trio.move_on_after(self._gather_s):
                while len(batch) < self._max_batch:
                    try:
                        batch.append(await self._recv.receive())
                    except trio.EndOfChannel:
                        return  # the next call ends the writer; this batch is written first
        while batch and len(batch) < self._max_batch:
            try:
                batch.append(self._recv.receive_nowait())
            except trio.WouldBlock:
                break

    async def _drain(self) -> None:
        left, self._batch = self._batch, []
        while True:
            try:
                left.append(self._recv.receive_nowait())
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                break
        # No checkpoint since the loop above: nothing can slip in between. Later log_turn()
        # calls count as drops instead of vanishing into a queue nobody reads.
        self._recv.close()
        chunks = [left[i : i + self._max_batch] for i in range(0, len(left), self._max_batch)]
        with trio.move_on_after(self._drain_timeout) as scope:
            for chunk in chunks or [[]]:  # [[]]: the kept turns get one last try
                await self._write(chunk)
            await trio.to_thread.run_sync(self._checkpoint, limiter=self._limiter)
        if scope.cancelled_caught:
            lost = self._enqueued - self._processed
            self.dropped += lost
            self._processed = self._enqueued
            log.error(
                "conversation log: drain timed out after %.1f s; %d turns lost",
                self._drain_timeout,
                lost,
            )
        if self._kept:
            self.failed += len(self._kept)
            log.error(
                "conversation log: %d turns kept after a failed write are lost at shutdown",
                len(self._kept),
            )
            self._kept.clear()
            self._report()
        self._wake()

    def _checkpoint(self) -> None:
        try:
            self.store.checkpoint()
        except (sqlite3.Error, StoreError) as exc:
            log.warning("conversation log: checkpoint failed: %s", exc)

    async def _write(self, batch: list[TurnRecord]) -> None:
        """Write the kept turns, then `batch`, in one transaction (order preserved)."""
        rows = [*self._kept, *batch]
        if not rows:
            return
        try:
            await trio.to_thread.run_sync(self.store.add_turns, rows, limiter=self._limiter)
        except Exception as exc:
            if transient(exc):
                self._keep(batch, exc)
            else:
                # The log is not worth taking the kiosk down for: count, say so, carry on.
                self.failed += len(rows)
                log.error("conversation log: %d turns not written: %s", len(rows), exc)
                self._kept.clear()
        else:
            self.written += len(rows)
            if self._kept:
                log.info(
                    "conversation log: writing again; %d turns kept since the failed write "
                    "%.1f s ago are written (%d dropped meanwhile)",
                    len(self._kept),
                    trio.current_time() - self._kept_since,
                    self._episode_dropped,
                )
                self._kept.clear()
        self._processed += len(batch)
        self._report()
        self._wake()

    def _keep(self, batch: list[TurnRecord], exc: Exception) -> None:
        if not self._kept:  # a new episode: said once, not once per batch
            self._kept_since = trio.current_time()
            self._episode_dropped = 0
            log.warning(
                "conversation log: write failed (%s); keeping up to %d turns in memory and "
                "retrying every %g s",
                exc,
                self._max_retry,
                self._retry_s,
            )
        room = max(0, self._max_retry - len(self._kept))
        self._kept.extend(batch[:room])
        lost = len(batch) - min(room, len(batch))
        if lost:
            first = self._episode_dropped == 0
            self._episode_dropped += lost
            self.dropped += lost
            if self._metrics is not None:
                self._metrics.store_dropped.inc(lost)
            if first or self._episode_dropped // 100 > (self._episode_dropped - lost) // 100:
                log.warning(
                    "conversation log: %d turns kept, the most it holds; %d newer turns "
                    "dropped since the write failed",
                    len(self._kept),
                    self._episode_dropped,
                )

    def _report(self) -> None:
        if self._metrics is not None:
            self._metrics.store_retrying.set(len(self._kept))

    def _wake(self) -> None:
        self._progress.set()
        self._progress = trio.Event()
