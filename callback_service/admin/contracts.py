"""What the console needs from the store, as one narrow Protocol composed of the store's pieces
(handlers.usecases.contracts): the reads of its counts and lists, the audit log it reads and writes
to, the inbox's dead letters, and WeCom's word on members."""

from __future__ import annotations

from typing import Protocol

from handlers.usecases.contracts import (
    AuditByAction,
    AuditListing,
    AuditNotes,
    BindingLookup,
    DeadLetters,
    DirectoryListing,
    DirectoryLookup,
    DirectorySize,
    MemberRecords,
)


class ConsoleStore(
    DirectoryLookup,
    DirectorySize,
    DirectoryListing,
    BindingLookup,
    MemberRecords,
    AuditListing,
    AuditByAction,
    AuditNotes,
    DeadLetters,
    Protocol,
):
    """The store as the admin console's views read and write it (every method may raise
    StoreUnavailable); a release and a directory import take their own (ReleaseStore, Directory)."""
