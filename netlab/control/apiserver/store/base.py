"""The store's interface, its errors and its change event, which both engines share.

Keys are `/registry/<resource>/<namespace>/<name>` (cluster-scoped: no namespace) as upstream's
etcd3 store lays them out. Every write gets the next revision of the whole store, which is the
object's resourceVersion; a list's resourceVersion is the store's revision when it was read.
create/update/delete are revision-checked compare-and-swap operations; watch returns every change
after a revision, or `Gone` (410) when that revision has been compacted away.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class Exists(StoreError):
    pass


class Conflict(StoreError):
    pass


class Gone(StoreError):
    """The requested revision is older than the oldest change kept."""


class TooLarge(StoreError):
    """The object is larger than the store takes (etcd's request limit, which both engines keep)."""

    def __init__(self, size: int):
        super().__init__(f"etcdserver: request is too large ({size} bytes, at most {MAX_VALUE})")
        self.size = size


MAX_VALUE = 1536 * 1024  # etcd's default --max-request-bytes


def encode(obj: dict[str, Any]) -> str:
    """An object as the store keeps it: compact JSON, refused when too large."""
    value = json.dumps(obj, separators=(",", ":"))
    if len(value) > MAX_VALUE:
        raise TooLarge(len(value))
    return value


@dataclass
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    key: str
    obj: dict[str, Any]  # for DELETED: the object as it was, with the deletion's revision
    rev: int
    # the object before this change (None: it did not exist), so that a filtered watch can tell
    # an object entering its selection from one leaving it, as upstream's watch cache does
    prev: dict[str, Any] | None = None


def key(resource: str, namespace: str | None = None, name: str = "") -> str:
    """The key of an object (or, without a name, the prefix of a resource or a namespace's part of it)."""
    return f"/registry/{resource}/" + (f"{namespace}/" if namespace else "") + name


def with_rv(obj: dict[str, Any], rev: int) -> dict[str, Any]:
    obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
    return obj


class Store:
    """The interface both engines implement."""

    def revision(self) -> int: ...
    def get(self, key: str) -> dict[str, Any] | None: ...
    def list(self, prefix: str) -> tuple[list[dict[str, Any]], int]: ...
    def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any]: ...
    def update(self, key: str, obj: dict[str, Any], expect: int | None = None) -> dict[str, Any]: ...
    def delete(self, key: str, expect: int | None = None) -> dict[str, Any]: ...
    def watch(self, prefix: str, since: int) -> AsyncIterator[Event]: ...
    def compact(self) -> None: ...
    def close(self) -> None: ...
