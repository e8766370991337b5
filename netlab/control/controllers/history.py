"""ControllerRevisions, the history StatefulSets and DaemonSets keep as upstream's
controller/history package keeps it: each revision holds the object's pod template as a strategic
merge patch (`{"spec":{"template":{...,"$patch":"replace"}}}`, what `kubectl rollout undo` applies
back), a revision number, and a name `<owner>-<hash>`; revisions nothing uses any more are pruned
beyond `revisionHistoryLimit`."""

from __future__ import annotations

import copy
import json

from netlab.api.client import ApiError
from netlab.control.controllers.base import owner_ref

HASH_LABEL = "controller.kubernetes.io/hash"  # upstream's ControllerRevisionHashLabel
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def fnv32(data: bytes) -> int:
    """FNV-1 (not 1a), as Go's hash/fnv New32 that HashControllerRevision uses."""
    h = 0x811C9DC5
    for b in data:
        h = ((h * 0x01000193) & 0xFFFFFFFF) ^ b
    return h


def safe_encode(text: str) -> str:
    """upstream's rand.SafeEncodeString: each character mapped into a vowel-free alphabet."""
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in text)


def go_json(obj: object) -> bytes:
    """JSON as Go's encoding/json writes a map: keys sorted, no spaces, <, > and & escaped."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def template_patch(obj: dict) -> dict:
    """What a revision records of a StatefulSet or DaemonSet: its template, replacing the one it
    is applied to."""
    template = copy.deepcopy((obj.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: dict) -> dict:
    """The pod template a revision holds."""
    t = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    t.pop("$patch", None)
    return t


def revision_hash(data: dict, collisions: int = 0) -> str:
    """HashControllerRevision: FNV-1 of the data's bytes, then of the collision count."""
    raw = go_json(data) + (str(collisions).encode() if collisions else b"")
    return safe_encode(str(fnv32(raw)))


def new_revision(owner: dict, data: dict, revision: int, labels: dict, hash_: str, hash_label: str = HASH_LABEL
                 ) -> dict:
    """A ControllerRevision of `owner` named and labelled by `hash_` (a StatefulSet's is the
    revision_hash of the data under controller.kubernetes.io/hash; a DaemonSet's the template's
    hash under controller-revision-hash), with the owner's annotations."""
    meta = {"name": f"{owner['metadata']['name'][:223]}-{hash_}", "namespace": owner["metadata"]["namespace"],
            "labels": {**labels, hash_label: hash_}, "ownerReferences": [owner_ref(owner)]}
    if owner["metadata"].get("annotations"):
        meta["annotations"] = dict(owner["metadata"]["annotations"])
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta, "data": data,
            "revision": revision}


def next_revision(revisions: list[dict]) -> int:
    return max((r.get("revision", 0) for r in revisions), default=0) + 1


def sort_revisions(revisions: list[dict]) -> list[dict]:
    return sorted(revisions, key=lambda r: (r.get("revision", 0), r["metadata"].get("creationTimestamp", ""),
                                            r["metadata"]["name"]))


class History:
    """The revisions one controller reads (an informer indexed by owner) and writes."""

    def __init__(self, client, informer):
        self.client, self.informer = client, informer

    def owned(self, owner: dict) -> list[dict]:
        return sort_revisions(self.informer.by_index("controller", owner["metadata"]["uid"]))

    async def create(self, rev: dict) -> dict:
        """Create `rev`; an existing revision of the same name and data is the same revision
        (a hash collision with other data raises the 409 for the caller to count)."""
        try:
            return await self.client.create("controllerrevisions", rev)
        except ApiError as e:
            if e.status != 409:
                raise
            cur = await self.client.get("controllerrevisions", rev["metadata"]["name"], rev["metadata"]["namespace"])
            if cur.get("data") == rev["data"] and any(
                    r.get("uid") == rev["metadata"]["ownerReferences"][0]["uid"]
                    for r in cur["metadata"].get("ownerReferences") or []):
                return cur
            raise

    async def renumber(self, rev: dict, revision: int) -> dict:
        if rev.get("revision") == revision:
            return rev
        return await self.client.patch("controllerrevisions", rev["metadata"]["name"], {"revision": revision},
                                       rev["metadata"]["namespace"])

    async def truncate(self, owner: dict, revisions: list[dict], live: set[str]) -> None:
        """Delete the oldest revisions no pod and no status names, beyond revisionHistoryLimit."""
        limit = (owner.get("spec") or {}).get("revisionHistoryLimit", 10)
        idle = [r for r in sort_revisions(revisions) if r["metadata"]["name"] not in live]
        for r in idle[:max(0, len(idle) - limit)]:
            try:
                await self.client.delete("controllerrevisions", r["metadata"]["name"], r["metadata"]["namespace"])
            except ApiError as e:
                if e.status != 404:
                    raise
