"""The SEFS commit journal: one append and one ``fdatasync`` per commit.

Owns the byte format of ``journal-<id>`` and its verification.  A full commit (a *checkpoint*)
rewrites the metadata object and renames a new superblock into place, which costs several
host metadata operations (a rename and the unlinks of superseded objects cost about a
millisecond each on ext4).  Commits between checkpoints append one record instead::

    record = blob length (u32) || record id (16) || blob
    blob   = seal(key(record id), payload padded to 4 KiB, aad = journal id || seq || prev tag)

``seq`` counts records from 0; ``prev tag`` is the previous record's tag (empty for the
first), so records chain: one cannot be dropped, moved or replaced by another without the
next failing to open.  Each record has its own key (HKDF of the volume key and its random id),
so a key never seals twice.  The payload is the volume's business (:mod:`.volume`).

A record whose length runs past the end of the file is the torn tail of a commit that never
returned (a crash in the middle of the append): it is cut off at mount.  A complete record
that does not open is tampering, and the mount fails.  Cutting whole records off the end looks
like an older volume; the platform's monotonic counter catches that (see :mod:`.volume`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from occlum.crypto.aead import IntegrityError
from occlum.fs.sefs.store import (
    JOURNAL_PREFIX,
    OBJECT_ID_SIZE,
    PAD,
    ObjectStore,
    is_space_error,
    padded,
)

__all__ = ["JOURNAL_PREFIX", "Journal", "Record"]

_FRAME = struct.Struct("<I16s")  # blob length, record id
_SEQ = struct.Struct("<Q")
_LABEL = b"occlum-sefs journal record"


@dataclass(slots=True, frozen=True)
class Record:
    """Where one verified record is, and the tag it had when it was verified."""

    oid: bytes
    seq: int
    offset: int  # of the blob
    length: int  # of the blob
    tag: bytes
    aad: bytes


class Journal:
    """The journal ``jid`` of the volume in ``store``: created empty by :meth:`create`, read
    back with :meth:`scan`, extended with :meth:`append`."""

    def __init__(self, store: ObjectStore, jid: bytes) -> None:
        self.store = store
        self.jid = jid
        self.name = JOURNAL_PREFIX + jid.hex()
        self.records: dict[bytes, Record] = {}
        self.size = 0
        self._seq = 0
        self._prev = b""
        self._fd = -1

    def _open(self, flags: int) -> None:
        try:
            self._fd = os.open(self.name, flags | os.O_CLOEXEC, 0o600, dir_fd=self.store.dirfd)
        except FileNotFoundError:
            raise self.store.error(f"the journal {self.name} is missing")
        except OSError as e:
            raise self.store.error(f"opening the journal: {e.strerror}", e.errno)

    def create(self) -> None:
        """A new, empty journal file (the caller makes the directory durable)."""
        self._open(os.O_RDWR | os.O_CREAT | os.O_EXCL)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _aad(self) -> bytes:
        return self.jid + _SEQ.pack(self._seq) + self._prev

    def scan(self) -> Iterator[bytes]:
        """Verify the journal from the start, yielding each record's payload in order; a torn
        tail is cut off (it held a commit that never completed)."""
        self._open(os.O_RDWR)
        try:
            end = os.fstat(self._fd).st_size
            pos = 0
            while pos < end:
                head = os.pread(self._fd, _FRAME.size, pos)
                if len(head) < _FRAME.size:
                    break
                length, oid = _FRAME.unpack(head)
                start = pos + _FRAME.size
                if start + length > end:
                    break
                blob = os.pread(self._fd, length, start)
                yield self._verify(oid, start, blob)
                pos = start + length
            if pos < end:
                os.ftruncate(self._fd, pos)
                os.fdatasync(self._fd)
        except OSError as e:
            raise self.store.error(f"reading the journal: {e.strerror}")
        self.size = pos

    def _verify(self, oid: bytes, offset: int, blob: bytes) -> bytes:
        aad = self._aad()
        try:
            payload = self.store.open(self._key(oid), blob, aad)
        except IntegrityError:
            raise self.store.error(
                f"journal record {self._seq} fails verification (tampered, reordered or replayed)"
            )
        self._advance(oid, offset, blob, aad)
        return payload

    def _advance(self, oid: bytes, offset: int, blob: bytes, aad: bytes) -> Record:
        """Record the verified or written blob ``oid`` at ``offset``; the chain moves on."""
        tag = self.store.tag_of(blob)
        rec = Record(oid, self._seq, offset, len(blob), tag, aad)
        self.records[oid] = rec
        self._seq += 1
        self._prev = tag
        return rec

    def _key(self, oid: bytes) -> bytes:
        return self.store.derive(_LABEL, self.jid + oid)

    def append(self, oid: bytes, payload: bytes | bytearray, *, durable: bool = True) -> Record:
        """Seal ``payload`` as the next record and make it durable (with ``durable`` off, the
        next :meth:`sync` or durable append does); on failure the journal is cut back to what
        it was and the error raised."""
        if len(oid) != OBJECT_ID_SIZE:
            raise ValueError("record ids are 16 bytes")
        n = len(payload)
        body = bytes(payload) + bytes(padded(n) - n) if n % PAD else payload
        aad = self._aad()
        blob = self.store.seal(self._key(oid), body, aad)
        frame = _FRAME.pack(len(blob), oid) + blob
        try:
            written = 0
            while written < len(frame):
                written += os.pwrite(self._fd, frame[written:], self.size + written)
            if durable:
                os.fdatasync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass  # the torn tail is cut off at the next mount
            if is_space_error(e):
                self.store.short = True
            raise self.store.error(f"appending to the journal: {e.strerror}", e.errno)
        rec = self._advance(oid, self.size + _FRAME.size, blob, aad)
        self.size += len(frame)
        self.store.step("journal-appended")
        return rec

    def sync(self) -> None:
        """Make the records appended so far durable."""
        try:
            os.fdatasync(self._fd)
        except OSError as e:
            raise self.store.error(f"syncing the journal: {e.strerror}", e.errno)

    def read(self, oid: bytes, what: str) -> bytes:
        """The payload of the verified record ``oid``, checked again (the file may have changed
        since the mount), or EIO."""
        rec = self.records.get(oid)
        if rec is None:
            raise self.store.error(f"{what}: journal record {oid.hex()} is unknown")
        try:
            blob = os.pread(self._fd, rec.length, rec.offset)
            if len(blob) != rec.length or self.store.tag_of(blob) != rec.tag:
                raise IntegrityError("changed since it was verified")
            return self.store.open(self._key(oid), blob, rec.aad)
        except (IntegrityError, OSError) as e:
            raise self.store.error(f"{what}: journal record {rec.seq} fails verification ({e})")

    @property
    def empty(self) -> bool:
        return not self.records
