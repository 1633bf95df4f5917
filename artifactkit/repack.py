"""Garbage in packs (as restic's prune/repack): what gc's deletes leave behind in a store whose
small blobs live in packs (packs.py), and how it goes.

Deleting blobs writes a new index without them and deletes the old one (an index is immutable,
named by its digest); a pack's bytes go once no index names it, by a fresh listing, and never
while an index cannot be read (it might name them). A pack mostly dead is repacked: its live blobs
sent again in new packs, the old one deleted once the new indexes are seen. sweep() removes what
an interrupted writer left (a pack without its index, an index without its pack).

Each function takes the PackedBackend (`packed`): its lock, its index map (`packed.index`,
pack_index.PackIndex), the backend under it (`packed.inner`) and its writer.
"""

from __future__ import annotations

from .errors import ArtifactkitError
from .hashing import digest_bytes
from .layout import INDEX, PACKS, digest_of_object_key, digest_of_pack_key, index_key, object_key, pack_key

_REPACK_MIN = 1 << 20  # gc repacks a pack of at least this size…
_REPACK_LIVE = 0.5  # …once less than this fraction of its bytes is live


def drop_blobs(packed, doomed: set[bytes]) -> int:
    """Blobs (by digest) leave each index naming them, replaced by one without them (written
    first); a pack none of whose blobs is left goes once a fresh listing shows no index naming
    it. Returns the packs deleted."""
    index = packed.index
    with packed.lock:
        index.refresh(force=True)  # only indexes still there are replaced (another gc may have)
        hit = [(k, ix) for k, ix in index.indexes.items() if any(b[0] in doomed for b in ix.blobs)]
        if not hit:
            return 0
        kept = [ix.without(doomed) for _, ix in hit]
        packed.inner.write_many([(index_key(ix.digest), ix.encoded) for ix in kept if ix.blobs])
        packed.inner.delete([k for k, _ in hit])
        empty = {ix.pack for ix in kept if not ix.blobs} - {ix.pack for ix in kept if ix.blobs}
        return delete_unnamed(packed, empty)


def delete_unnamed(packed, packs: set[str]) -> int:
    """Delete those of `packs` that no index names, by a fresh listing; none while an index
    cannot be read (it might name them). Returns how many."""
    index = packed.index
    with packed.lock:
        index.refresh(force=True)
        if not index.usable():  # an index we could not read might name them
            return 0
        gone = [pack_key(p) for p in packs - index.named_packs()]
        packed.inner.delete(gone)
        return len(gone)


def repack(packed) -> int:
    """Reclaim the bytes of dead blobs (they leave their index, not their pack): a pack of at
    least _REPACK_MIN bytes less than _REPACK_LIVE live is read whole (one GET), its live
    blobs checked against their digests and sent again in new packs, in their old order; once
    a fresh listing shows every one of them in a new usable index, the old indexes and packs
    are deleted (a reader holding the old map finds the blobs anew on its miss). A pack that
    cannot be read or holds a blob that does not check is left for verify to name. Memory: one
    old pack and the pending new one. Returns the packs deleted."""
    if not packed.write_packs:
        return 0  # pack=false: never turn packs into one object per blob behind the user's back
    index = packed.index
    with packed.lock:
        index.refresh(force=True)
        if not index.usable():
            return 0
        entries: dict[str, dict[bytes, tuple[int, int]]] = {}
        size: dict[str, int] = {}
        for ix in index.indexes.values():
            size[ix.pack] = ix.size
            entries.setdefault(ix.pack, {}).update((d, (o, n)) for d, o, n in ix.blobs)
    moved = set()
    for pack, live in sorted(entries.items()):
        if size[pack] < _REPACK_MIN or sum(n for _, n in live.values()) >= size[pack] * _REPACK_LIVE:
            continue
        try:
            [data] = packed.inner.read_ranges([(pack_key(pack), 0, size[pack])])
        except ArtifactkitError:
            continue
        blobs = [(object_key(d.hex()), data[o : o + n]) for d, (o, n) in sorted(live.items(), key=lambda e: e[1])]
        if len(data) == size[pack] and all(digest_bytes(b) == digest_of_object_key(k) for k, b in blobs):
            packed.write_many(blobs)
            moved.add(pack)
    if not moved:
        return 0
    packed.sync()  # the new packs and their indexes, before anything old goes
    with packed.lock:
        index.refresh(force=True)
        elsewhere = {d for ix in index.indexes.values() if ix.pack not in moved for d, _, _ in ix.blobs}
        if not index.usable() or any(d not in elsewhere for p in moved for d in entries[p]):
            return 0  # a new pack is not (yet) usable: keep the old ones, the next gc tries again
        packed.inner.delete([k for k, ix in index.indexes.items() if ix.pack in moved])
        index.forget()
        return delete_unnamed(packed, moved)


def sweep(packed, older_than: float) -> int:
    """Delete what an interrupted writer or gc left, last written before `older_than`: packs
    no index names (a killed upload between a pack and its index; listed before the indexes,
    so a pack sent again with its index meanwhile is kept) and indexes naming a pack that is
    gone; first, packs mostly dead are repacked (repack). Returns the packs deleted."""
    deleted = repack(packed)
    inner = packed.inner
    old = {
        d
        for i in inner.list(PACKS + "/")
        if (d := digest_of_pack_key(i.key)) and i.mtime is not None and i.mtime < older_than
    }
    deleted += delete_unnamed(packed, old)
    with packed.lock:
        dangling = set(packed.index.dangling)
    inner.delete(
        [i.key for i in inner.list(INDEX + "/") if i.key in dangling and i.mtime is not None and i.mtime < older_than]
    )
    packed.index.forget()
    return deleted
