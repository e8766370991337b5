"""The store on SQLite, embedded in the API server: kine's idea, the current objects plus a log
of changes for watches, in one file with WAL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from netlab.control.apiserver.store.base import Conflict, Event, Exists, Gone, NotFound, Store, encode, with_rv

# Changes kept for watches that resume from an older revision (upstream's etcd default is 5 min).
HISTORY_SECONDS = 300
MIN_HISTORY = 1000


class SQLiteStore(Store):
    """Watchers in this process are woken directly by the writes."""

    def __init__(self, path: str | Path):
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.executescript("""
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, rev INTEGER NOT NULL, value BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS log (rev INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,
                                            type TEXT NOT NULL, value BLOB NOT NULL, at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS log_key ON log(key);
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT OR IGNORE INTO meta VALUES ('compacted', 0);
        """)
        self.watchers: list[tuple[str, asyncio.Queue]] = []

    def revision(self) -> int:
        row = self.db.execute("SELECT max(rev) FROM log").fetchone()
        return row[0] or 0

    def compacted(self) -> int:
        return self.db.execute("SELECT value FROM meta WHERE name='compacted'").fetchone()[0]

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM objects WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, prefix: str) -> tuple[list[dict[str, Any]], int]:
        self.db.execute("BEGIN")
        try:
            rows = self.db.execute("SELECT value FROM objects WHERE key >= ? AND key < ? ORDER BY key",
                                   (prefix, prefix + "\xff")).fetchall()
            rev = self.revision()
        finally:
            self.db.execute("COMMIT")
        return [json.loads(r[0]) for r in rows], rev

    def _write(self, kind: str, key: str, obj: dict[str, Any], expect: int | None, exists: bool) -> dict[str, Any]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT rev, value FROM objects WHERE key=?", (key,)).fetchone()
            if exists and row is None:
                raise NotFound(key)
            if not exists and row is not None:
                raise Exists(key)
            if expect is not None and row is not None and row[0] != expect:
                raise Conflict(key)
            prev = json.loads(row[1]) if row is not None else None
            if kind == "DELETED":
                obj = json.loads(row[1])
            cur = self.db.execute("INSERT INTO log (key, type, value, at) VALUES (?, ?, '', ?)",
                                  (key, kind, time.time()))
            rev = cur.lastrowid
            with_rv(obj, rev)
            value = encode(obj) if kind != "DELETED" else json.dumps(obj, separators=(",", ":"))
            self.db.execute("UPDATE log SET value=? WHERE rev=?", (value, rev))
            if kind == "DELETED":
                self.db.execute("DELETE FROM objects WHERE key=?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", (key, rev, value))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._notify(Event(kind, key, obj, rev, prev))
        return obj

    def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._write("ADDED", key, obj, None, exists=False)

    def update(self, key: str, obj: dict[str, Any], expect: int | None = None) -> dict[str, Any]:
        return self._write("MODIFIED", key, obj, expect, exists=True)

    def delete(self, key: str, expect: int | None = None) -> dict[str, Any]:
        return self._write("DELETED", key, {}, expect, exists=True)

    def _notify(self, ev: Event) -> None:
        for prefix, q in self.watchers:
            if ev.key.startswith(prefix):
                q.put_nowait(ev)

    async def watch(self, prefix: str, since: int) -> AsyncIterator[Event]:
        q: asyncio.Queue = asyncio.Queue()
        entry = (prefix, q)
        self.watchers.append(entry)  # subscribe first, then replay history: no change falls in between
        try:
            if since < self.compacted():
                raise Gone(since)
            last = since
            # each change with the one before it on the same key (what the object was)
            rows = self.db.execute(
                "SELECT * FROM (SELECT rev, key, type, value, LAG(type) OVER w, LAG(value) OVER w FROM log "
                "WHERE key >= ? AND key < ? WINDOW w AS (PARTITION BY key ORDER BY rev)) WHERE rev > ? ORDER BY rev",
                (prefix, prefix + "\xff", since)).fetchall()
            for rev, key, kind, value, prev_kind, prev_value in rows:
                last = rev
                obj = json.loads(value)
                if prev_kind is None:  # its earlier change is compacted away: it was as it is now, or absent
                    prev = None if kind == "ADDED" else obj
                else:
                    prev = None if prev_kind == "DELETED" else json.loads(prev_value)
                yield Event(kind, key, obj, rev, prev)
            while True:
                ev = await q.get()
                if ev.rev > last:
                    last = ev.rev
                    yield ev
        finally:
            self.watchers.remove(entry)

    def compact(self) -> None:
        rev = self.revision()
        row = self.db.execute("SELECT max(rev) FROM log WHERE at < ? AND rev <= ?",
                              (time.time() - HISTORY_SECONDS, rev - MIN_HISTORY)).fetchone()
        if row and row[0]:
            self.compact_to(row[0])

    def compact_to(self, rev: int) -> None:
        """Forget the changes up to `rev`: watches from before it get 410 Gone."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM log WHERE rev <= ? AND rev < (SELECT max(rev) FROM log)", (rev,))
        self.db.execute("UPDATE meta SET value=? WHERE name='compacted'", (rev,))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
