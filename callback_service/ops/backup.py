"""`wecom-bind backup PATH`: a consistent copy of the SQLite store, taken while the service runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

SQLITE_PREFIX = "sqlite:///"


class BackupError(Exception):
    """The backup could not be taken; the message says why and what to do."""


def sqlite_path(store_url: str) -> Path:
    """The file of a SQLite store URL; BackupError for any other store."""
    if not store_url.startswith(SQLITE_PREFIX) or len(store_url) == len(SQLITE_PREFIX):
        raise BackupError(
            "backup copies the SQLite store only; back Redis up from its AOF and RDB files "
            "(docs/deploy.md, Backups)"
        )
    return Path(store_url[len(SQLITE_PREFIX):])


def backup_sqlite(source: Path, target: Path, *, pages_per_step: int = 256) -> int:
    """Copy the database at source into a new file at target through SQLite's online backup API.

    Writers are not blocked for the whole copy: the pages go over in steps, and SQLite restarts the
    copy when a writer changes a page already copied, so the result is one consistent snapshot.
    Returns the size of the copy in bytes.
    """
    if not source.is_file():
        raise BackupError(f"no store at {source}")
    if target.exists():
        raise BackupError(f"{target} exists; name a new file")
    partial = target.with_name(target.name + ".partial")
    # Read-only, by URI: a backup never creates or changes the store. The path is percent-encoded:
    # a '#' or '?' in it would otherwise end the path, and SQLite would open (and copy) another file.
    live_uri = f"file:{quote(str(source.resolve()))}?mode=ro"
    with sqlite3.connect(live_uri, uri=True) as live, sqlite3.connect(partial) as copy:
        live.backup(copy, pages=pages_per_step)
        ok = copy.execute("PRAGMA integrity_check").fetchone()
    live.close()
    copy.close()
    if ok is None or ok[0] != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(f"the copy failed its integrity check: {ok}")
    partial.rename(target)
    return target.stat().st_size
