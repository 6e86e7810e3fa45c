"""Readers and their answers in SQLite (WAL: readers answer at once while a report reads).

Each reader has a session code (only its SHA-256 is stored) and an image order of their own, drawn
from the study's seed and their name. Each answer records when the image was first shown and when
it was answered. A reader's position is the number of images answered: reloading the page, or
coming back the next day, continues there.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import GanforgeError

SCHEMA = """
CREATE TABLE IF NOT EXISTS readers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    code_sha256 TEXT NOT NULL UNIQUE,
    item_order TEXT NOT NULL,          -- the reader's item ids, space-separated
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shown (
    reader_id INTEGER NOT NULL REFERENCES readers(id),
    item TEXT NOT NULL,
    shown_at REAL NOT NULL,            -- Unix time the image was first sent to this reader
    PRIMARY KEY (reader_id, item)
);
CREATE TABLE IF NOT EXISTS answers (
    reader_id INTEGER NOT NULL REFERENCES readers(id),
    position INTEGER NOT NULL,         -- 0-based place in the reader's order
    item TEXT NOT NULL,
    call TEXT NOT NULL CHECK (call IN ('real', 'generated')),
    confidence INTEGER NOT NULL,
    finding TEXT,
    answered_at REAL NOT NULL,
    seconds REAL NOT NULL,             -- from first shown to this answer
    changes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reader_id, item),
    UNIQUE (reader_id, position)
);
"""

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed from paper
CODE_LENGTH = 10  # 50 bits


class AnswerRefused(GanforgeError):
    """An answer for the wrong image, a changed answer where changes are off, or an invalid value."""


@dataclass(frozen=True)
class Reader:
    id: int
    name: str
    order: list[str]


@dataclass(frozen=True)
class Answer:
    reader: str
    position: int
    item: str
    call: str
    confidence: int
    finding: str | None
    answered_at: float
    seconds: float
    changes: int


def normalise_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper()


def _code_hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode("utf-8")).hexdigest()


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


class Store:
    """The study's ``answers.sqlite``. Every call opens its own connection: safe from any thread."""

    def __init__(self, path: Path):
        self.path = path
        with self._connection() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit transactions below
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock first: two requests of one reader cannot interleave."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add_reader(self, name: str, item_ids: Sequence[str], seed: int) -> str:
        """Register ``name`` with an order of their own; returns the session code (shown once, stored hashed)."""
        name = name.strip()
        if not name or len(name) > 64 or not name.isprintable():
            raise GanforgeError(f"reader name {name!r}: use 1–64 printable characters")
        order = list(item_ids)
        random.Random(f"{seed}/{name}").shuffle(order)
        code = new_code()
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM readers WHERE name = ?", (name,)).fetchone():
                raise GanforgeError(f"reader {name!r} already exists in {self.path}")
            db.execute(
                "INSERT INTO readers (name, code_sha256, item_order, created) VALUES (?, ?, ?, ?)",
                (name, _code_hash(code), " ".join(order), created),
            )
        return code

    def reader(self, code: str) -> Reader | None:
        """The reader whose code this is, or None."""
        with self._connection() as db:
            row = db.execute(
                "SELECT id, name, item_order FROM readers WHERE code_sha256 = ?", (_code_hash(code),)
            ).fetchone()
        return Reader(row[0], row[1], row[2].split()) if row else None

    def readers(self) -> list[Reader]:
        with self._connection() as db:
            rows = db.execute("SELECT id, name, item_order FROM readers ORDER BY id").fetchall()
        return [Reader(i, name, order.split()) for i, name, order in rows]

    def answers(self, reader: Reader | None = None) -> list[Answer]:
        """Every answer (of one reader, or of all), by reader then position."""
        query = (
            "SELECT r.name, a.position, a.item, a.call, a.confidence, a.finding, a.answered_at, a.seconds, a.changes"
            " FROM answers a JOIN readers r ON r.id = a.reader_id"
        )
        with self._connection() as db:
            if reader is None:
                rows = db.execute(query + " ORDER BY r.id, a.position").fetchall()
            else:
                rows = db.execute(query + " WHERE a.reader_id = ? ORDER BY a.position", (reader.id,)).fetchall()
        return [Answer(*row) for row in rows]

    def shown(self, reader: Reader, item: str) -> None:
        """Record the first time ``item`` was sent to ``reader`` (later views keep the first time)."""
        with self._connection() as db:
            db.execute("INSERT OR IGNORE INTO shown VALUES (?, ?, ?)", (reader.id, item, time.time()))

    def record(
        self,
        reader: Reader,
        position: int,
        call: str,
        confidence: int,
        finding: str | None,
        allow_changes: bool,
    ) -> None:
        """Store the answer for ``position`` in the reader's order: the next unanswered one, or an earlier one
        when changes are allowed. Checked inside the write lock, so a double submit cannot skip an image."""
        with self._transaction() as db:
            answered = db.execute("SELECT COUNT(*) FROM answers WHERE reader_id = ?", (reader.id,)).fetchone()[0]
            if not 0 <= position <= answered or position >= len(reader.order):
                raise AnswerRefused(f"position {position} is not open (next is {answered})")
            item = reader.order[position]
            now = time.time()
            if position < answered:
                if not allow_changes:
                    raise AnswerRefused("this study does not allow changing an answer")
                db.execute(
                    "UPDATE answers SET call = ?, confidence = ?, finding = ?, answered_at = ?, changes = changes + 1"
                    " WHERE reader_id = ? AND position = ?",
                    (call, confidence, finding, now, reader.id, position),
                )
                return
            row = db.execute(
                "SELECT shown_at FROM shown WHERE reader_id = ? AND item = ?", (reader.id, item)
            ).fetchone()
            shown_at = row[0] if row else now
            db.execute(
                "INSERT INTO answers (reader_id, position, item, call, confidence, finding, answered_at, seconds)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (reader.id, position, item, call, confidence, finding, now, now - shown_at),
            )

    def progress(self, reader: Reader) -> int:
        """How many images ``reader`` has answered (their position)."""
        with self._connection() as db:
            return db.execute("SELECT COUNT(*) FROM answers WHERE reader_id = ?", (reader.id,)).fetchone()[0]
