"""The SEFS object store: opaque, sealed objects in a host directory and the atomic superblock.

Owns everything SEFS puts on the host and how it gets there.  The host directory holds only

- ``<32 hex digits>``: one *object* per file extent or metadata version, named by a random
  128-bit id that is never reused.  Its contents are the plaintext zero-padded to a multiple
  of :data:`PAD` (so the host learns sizes only to 4 KiB) and sealed with AES-256-GCM
  (``mac_only``: authenticated with HMAC-SHA256, not encrypted) under a key derived by HKDF
  from the volume key and the object's id, with the id as associated data.  Whoever refers to
  an object records its id and its tag; reading checks both, so no object can be swapped for
  another, replaced by an older version, or edited.
- ``superblock``: a short clear header (magic, version, mode, a key-check value so that a
  wrong key gets its own message) and a sealed body naming the current metadata object (id,
  tag, length) and a generation number.  It is the root of the volume's tree of tags.
- ``superblock.tmp`` and ``formatting``: transient files of a commit and of the first format.
- ``reserve``: zeros allocated on the host (:meth:`ObjectStore.make_reserve`) and given back
  (:meth:`ObjectStore.release_reserve`) when a commit that only shrinks the volume or a
  checkpoint finds the host file system full, so that a program can always delete its way out
  of a full disk.  It holds nothing and is never read.

A checkpoint writes new objects under new names and fsyncs them and the directory, then
replaces the superblock atomically (temporary file, fsync, rename, fsync directory), and only
then removes objects and journals the new state no longer names.  A crash anywhere leaves the
old or the new superblock, each naming objects that are all durable.  Commits between
checkpoints append to the journal instead (one write and one ``fdatasync``).

- ``journal-<32 hex digits>``: the commits since the superblock's checkpoint, appended one
  sealed record each (:mod:`occlum.fs.sefs.journal`).

Replaying the *whole* directory (superblock, journal and objects) to an older copy is caught
by the platform's monotonic counter (:mod:`occlum.enclave.counter`), not here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from occlum.abi.errors import SyscallError
from occlum.crypto.aead import (
    IntegrityError,
    authenticate,
    open_authenticated,
    open_sealed,
    seal,
    tag_of,
)
from occlum.crypto.kdf import derive_key

__all__ = ["PAD", "RESERVE", "SPACE_ERRORS", "ObjectRef", "ObjectStore", "StoreUsage", "Superblock"]

PAD = 4096
OBJECT_ID_SIZE = 16
SUPERBLOCK = "superblock"
SUPERBLOCK_TMP = "superblock.tmp"
FORMATTING = "formatting"
RESERVE = "reserve"
JOURNAL_PREFIX = "journal-"
# The reserve: what a commit of deletes and truncates, and a checkpoint, need beyond a full
# disk: a journal record (the changed inodes' metadata and at most one chunk of data) and a
# checkpoint's metadata object and superblock.  Each costs at most the metadata's size, which
# grows with the volume: 1 MiB plus twice the last checkpoint's metadata object.
RESERVE_MIN = 1 << 20
_RELEASE_STEP = 64 * 1024  # what a commit takes of the reserve, at least: block and inode slack
# what a full host file system gives: the commit may then fall back to the reserve
SPACE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})
_OBJECT_NAME = re.compile(r"[0-9a-f]{32}")

_MAGIC = b"OCCLSEFS"
_VERSION = 2
_FLAG_MAC_ONLY = 1
_HEADER = struct.Struct("<8sII16s")  # magic, version, flags, key check
_BODY_V1 = struct.Struct("<QQ16sB")  # generation, metadata length, metadata id, tag length
# generation, metadata length, metadata id, journal id, volume id, tag length
_BODY = struct.Struct("<QQ16s16s16sB")

_OBJECT_LABEL = b"occlum-sefs object"
_MAC_OBJECT_LABEL = b"occlum-sefs mac object"
_SUPERBLOCK_LABEL = b"occlum-sefs superblock"
_KEY_CHECK_LABEL = b"occlum-sefs key check"


@dataclass(slots=True, frozen=True)
class ObjectRef:
    """How a referrer names one object: its id and the tag that ends its sealed blob."""

    oid: bytes
    tag: bytes

    @property
    def name(self) -> str:
        return self.oid.hex()


@dataclass(slots=True, frozen=True)
class Superblock:
    """The decoded superblock: the checkpoint's metadata object, the journal of the commits
    since, the commit count at the checkpoint, and the volume's random id (which names its
    monotonic counter).  A version-1 superblock has no journal and no id (both empty)."""

    generation: int
    meta: ObjectRef
    meta_len: int
    journal: bytes = b""
    volume: bytes = b""


def padded(n: int) -> int:
    return -(-n // PAD) * PAD


def reserve_size(meta_len: int) -> int:
    """The reserve a volume whose checkpoint metadata is ``meta_len`` bytes keeps."""
    return RESERVE_MIN + 2 * padded(meta_len)


def is_space_error(e: BaseException) -> bool:
    """Whether ``e`` says the host file system (or the owner's quota) is full."""
    return isinstance(e, OSError | SyscallError) and e.errno in SPACE_ERRORS


@dataclass(slots=True)
class StoreUsage:
    """What the storage directory holds, in bytes the host allocated (``st_blocks``)."""

    objects: int = 0  # object files (extents and metadata), named or not
    object_bytes: int = 0
    journal_bytes: int = 0  # every journal file
    reserve_bytes: int = 0
    other_bytes: int = 0  # superblock, transient files
    garbage: int = 0  # object and journal files the committed state does not name
    garbage_bytes: int = 0

    @property
    def total(self) -> int:
        return self.object_bytes + self.journal_bytes + self.reserve_bytes + self.other_bytes


class ObjectStore:
    """Sealed objects and the superblock in one host directory, reached through a directory fd.

    ``on_step`` is called with a step name after each durable step of a commit; tests copy the
    directory there to stand for a crash at that moment.
    """

    def __init__(self, root: Path, key: bytes, *, mac_only: bool) -> None:
        self.root = root
        self.mac_only = mac_only
        self._key = key
        self._sb_key = derive_key(key, _SUPERBLOCK_LABEL, b"")
        self._key_check = derive_key(key, _KEY_CHECK_LABEL, b"")[:16]
        self._label = _MAC_OBJECT_LABEL if mac_only else _OBJECT_LABEL
        self.on_step: Callable[[str], None] | None = None
        # ids written since the last commit: garbage if that commit does not name them
        self.written: set[bytes] = set()
        # a write found the host full, or the reserve is not whole (given back, or no room
        # for it): commits remove the objects they stop naming at once (:meth:`nearly_full`)
        self.short = False
        self.reserve = 0  # the size the reserve was made
        self.reserve_held = 0  # and how much of it is allocated now
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._dirfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise self.error(f"cannot open the storage directory: {e.strerror}", e.errno)
        try:
            # one LibOS at a time: two writers of one journal would lose each other's commits
            fcntl.flock(self._dirfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._dirfd)
            self._dirfd = -1
            raise self.error(
                "the volume is in use by another running LibOS (another occlum run or a "
                "started instance of the same instance directory)",
                errno.EBUSY,
            )

    # --- plumbing ----------------------------------------------------------------------------

    def error(self, why: str, err: int | None = errno.EIO) -> SyscallError:
        return SyscallError(err or errno.EIO, f"SEFS {self.root}: {why}")

    def close(self) -> None:
        if self._dirfd >= 0:
            os.close(self._dirfd)
            self._dirfd = -1

    def _step(self, name: str) -> None:
        if self.on_step is not None:
            self.on_step(name)

    def _write_file(self, name: str, data: bytes | bytearray) -> None:
        """Write a new file and fsync it; on failure nothing of it stays (a full disk must not
        keep the part that fitted)."""
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self._dirfd
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException as e:
            if is_space_error(e):
                self.short = True
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._dirfd)
            raise
        finally:
            os.close(fd)

    def _read_file(self, name: str) -> bytes:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self._dirfd)
        try:
            size = os.fstat(fd).st_size
            parts = []
            while size > 0 and (part := os.read(fd, size)):
                parts.append(part)
                size -= len(part)
            return b"".join(parts)
        finally:
            os.close(fd)

    def sync_dir(self) -> None:
        os.fsync(self._dirfd)

    def listing(self) -> list[str]:
        return os.listdir(self._dirfd)

    def object_ids(self, names: Iterable[str]) -> set[bytes]:
        return {bytes.fromhex(n) for n in names if _OBJECT_NAME.fullmatch(n)}

    @property
    def dirfd(self) -> int:
        return self._dirfd

    def step(self, name: str) -> None:
        """Report a durable step of a commit to ``on_step`` (tests crash there)."""
        self._step(name)

    # --- objects -------------------------------------------------------------------------------

    def _object_key(self, oid: bytes) -> bytes:
        # one key per object id, and ids are random and never reused: no key seals twice
        return derive_key(self._key, self._label, oid)

    def derive(self, label: bytes, context: bytes) -> bytes:
        """A key of this volume for ``label`` and ``context`` (an id used once)."""
        return derive_key(self._key, label, context)

    def seal(self, key: bytes, body: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        """Seal (or, MAC-only, authenticate) ``body`` as this volume's mode says."""
        return bytes(authenticate(key, body, aad) if self.mac_only else seal(key, body, aad))

    def open(self, key: bytes, blob: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        """Open a :meth:`seal` blob, or raise IntegrityError."""
        return open_authenticated(key, blob, aad) if self.mac_only else open_sealed(key, blob, aad)

    def tag_of(self, blob: bytes | bytearray | memoryview) -> bytes:
        return tag_of(blob, mac_only=self.mac_only)

    def put(self, data: bytes | memoryview) -> ObjectRef:
        """Seal ``data`` (padded) as a new object, durable on return (the directory is not).

        Safe to call from several threads at once (sealing and file I/O release the GIL).
        """
        oid = os.urandom(OBJECT_ID_SIZE)
        n = len(data)
        body = bytes(data) + bytes(padded(n) - n) if n % PAD else data
        key = self._object_key(oid)
        blob = authenticate(key, body, oid) if self.mac_only else seal(key, body, oid)
        try:
            self._write_file(oid.hex(), blob)
        except OSError as e:
            raise self.error(f"writing object {oid.hex()}: {e.strerror}", e.errno)
        self.written.add(oid)
        self._step("object")
        return ObjectRef(oid, tag_of(blob, mac_only=self.mac_only))

    def get(self, ref: ObjectRef, length: int, what: str) -> bytes:
        """The first ``length`` bytes of the object ``ref`` names, verified, or EIO.

        ``what`` says whose object it is (``metadata``, ``contents of inode 12``) for the error.
        """
        try:
            blob = self._read_file(ref.name)
        except FileNotFoundError:
            raise self.error(f"{what}: object {ref.name} is missing")
        except OSError as e:
            raise self.error(f"{what}: reading object {ref.name}: {e.strerror}")
        try:
            if tag_of(blob, mac_only=self.mac_only) != ref.tag:
                raise IntegrityError("not the version the metadata names")
            key = self._object_key(ref.oid)
            if self.mac_only:
                body = open_authenticated(key, blob, ref.oid)
            else:
                body = open_sealed(key, blob, ref.oid)
        except IntegrityError as e:
            raise self.error(
                f"{what}: object {ref.name} fails verification ({e}; tampered, swapped or replayed)"
            )
        if len(body) != padded(length):
            raise self.error(f"{what}: object {ref.name} has the wrong length")
        return body if len(body) == length else body[:length]

    def remove(self, names: Iterable[str]) -> None:
        """Remove objects (journals) no committed state names; a failure only leaves garbage."""
        for name in names:
            try:
                os.unlink(name, dir_fd=self._dirfd)
            except OSError:
                pass
        self._step("removed")

    def forget(self, oids: Iterable[bytes]) -> None:
        """Remove objects written since the last commit that no commit will name (a failed
        commit's, a file that did not fit): they are garbage from the moment they fail."""
        names = [oid.hex() for oid in oids]
        self.written.difference_update(bytes.fromhex(n) for n in names)
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._dirfd)

    def garbage_names(self, keep: set[str], names: Iterable[str] | None = None) -> list[str]:
        """The object and journal files in the directory (of ``names``, some of its
        :meth:`listing`) that are not in ``keep``."""
        return [
            n
            for n in (self.listing() if names is None else names)
            if (n.startswith(JOURNAL_PREFIX) or _OBJECT_NAME.fullmatch(n)) and n not in keep
        ]

    def sweep(self, keep: set[str]) -> int:
        """Remove every object and journal file not in ``keep``: objects of failed or
        superseded commits, of a crash between a write and its commit.  Returns how many."""
        garbage = self.garbage_names(keep)
        self.remove(garbage)
        return len(garbage)

    def usage(self, keep: set[str]) -> StoreUsage:
        """What the directory holds; files outside ``keep`` count as garbage."""
        u = StoreUsage()
        for name in self.listing():
            try:
                st = os.stat(name, dir_fd=self._dirfd, follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            size = st.st_blocks * 512
            if name == RESERVE:
                u.reserve_bytes += size
                continue
            journal = name.startswith(JOURNAL_PREFIX)
            obj = bool(_OBJECT_NAME.fullmatch(name))
            if journal:
                u.journal_bytes += size
            elif obj:
                u.objects += 1
                u.object_bytes += size
            else:
                u.other_bytes += size
            if (journal or obj) and name not in keep:
                u.garbage += 1
                u.garbage_bytes += size
        return u

    # --- the reserve ------------------------------------------------------------------------------

    def make_reserve(self, size: int) -> bool:
        """Have ``size`` bytes allocated as the reserve (it never shrinks); False when the
        host has no room for them (the store is then short of space) or cannot allocate
        ahead at all (then there is no reserve, and nothing else changes)."""
        self.reserve = max(self.reserve, size)
        try:
            fd = os.open(
                RESERVE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600,
                dir_fd=self._dirfd,
            )  # fmt: skip
        except OSError as e:
            self.short = is_space_error(e)
            return False
        try:
            st = os.fstat(fd)
            self.reserve_held = min(st.st_size, st.st_blocks * 512)
            if self.reserve_held < self.reserve:
                os.posix_fallocate(fd, 0, self.reserve)
                os.fsync(fd)  # the allocation must survive a crash, as the objects it guards
                self.reserve_held = self.reserve
        except OSError as e:
            if not is_space_error(e):
                self.reserve = self.reserve_held = 0  # no reserve here
            self.short = is_space_error(e)
            return False
        finally:
            os.close(fd)
        self.short = False
        return True

    def spare(self) -> int:
        """The bytes the host has free beyond what the reserve still lacks: what file data may
        take while the reserve is not whole (the rest is for deletes)."""
        try:
            v = os.fstatvfs(self._dirfd)
        except OSError:
            return 0
        return max(0, v.f_bavail * v.f_frsize - max(0, self.reserve - self.reserve_held))

    def nearly_full(self) -> bool:
        """Whether the reserve is not whole, or the host has less room left than twice the
        reserve or 1/20 of its size: commits then remove the objects they stop naming at once."""
        if self.short:
            return True
        try:
            v = os.fstatvfs(self._dirfd)
        except OSError:
            return False
        return v.f_bavail < max(2 * self.reserve // max(v.f_frsize, 1), v.f_blocks // 20)

    def release_reserve(self, need: int | None = None) -> bool:
        """Give ``need`` bytes of the reserve (rounded up to 64 KiB; None: all of it) back to
        the full host file system for the commit under way, keeping the rest for the next
        ones; False if there was nothing to give."""
        try:
            fd = os.open(RESERVE, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self._dirfd)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            held = min(st.st_size, st.st_blocks * 512)
            if held == 0:
                return False
            keep = 0 if need is None else max(0, held - -(-need // _RELEASE_STEP) * _RELEASE_STEP)
            os.ftruncate(fd, keep)
        except OSError:
            return False
        finally:
            os.close(fd)
        self.short = True
        self.reserve_held = keep
        return True

    # --- superblock --------------------------------------------------------------------------------

    def _header(self) -> bytes:
        flags = _FLAG_MAC_ONLY if self.mac_only else 0
        return _HEADER.pack(_MAGIC, _VERSION, flags, self._key_check)

    def read_superblock(self) -> Superblock | None:
        """The current superblock, None if there is none, or EIO saying what is wrong with it."""
        try:
            raw = self._read_file(SUPERBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self.error(f"reading the superblock: {e.strerror}")
        if len(raw) < _HEADER.size:
            raise self.error("superblock is truncated")
        header = raw[: _HEADER.size]
        magic, version, flags, check = _HEADER.unpack(header)
        if magic != _MAGIC:
            raise self.error("superblock is not a SEFS superblock (corrupted?)")
        if version not in (1, _VERSION):
            raise self.error(f"superblock has unsupported version {version}")
        if bool(flags & _FLAG_MAC_ONLY) != self.mac_only:
            have = "integrity-only (MAC)" if flags & _FLAG_MAC_ONLY else "encrypted"
            raise self.error(f"volume is {have}; mount it with the matching MAC option")
        if check != self._key_check:
            raise self.error("wrong key for this volume")
        body_blob = raw[_HEADER.size :]
        try:
            if self.mac_only:
                body = open_authenticated(self._sb_key, body_blob, header)
            else:
                body = open_sealed(self._sb_key, body_blob, header)
        except IntegrityError:
            raise self.error("superblock fails verification (corrupted or tampered)")
        layout = _BODY_V1 if version == 1 else _BODY
        if len(body) < layout.size:
            raise self.error("superblock body is malformed")
        fields = layout.unpack(body[: layout.size])
        generation, meta_len, meta_id = fields[:3]
        journal, volume = (b"", b"") if version == 1 else fields[3:5]
        tag = body[layout.size :]
        if len(tag) != fields[-1]:
            raise self.error("superblock body is malformed")
        return Superblock(generation, ObjectRef(meta_id, tag), meta_len, journal, volume)

    def write_superblock(self, sb: Superblock) -> None:
        """Replace the superblock atomically: a crash leaves the old one or this one."""
        header = self._header()
        fields = (sb.generation, sb.meta_len, sb.meta.oid, sb.journal, sb.volume, len(sb.meta.tag))
        body = _BODY.pack(*fields) + sb.meta.tag
        blob: bytes | bytearray
        if self.mac_only:
            blob = authenticate(self._sb_key, body, header)
        else:
            # the superblock key seals many superblocks; each gets a fresh random nonce
            blob = seal(self._sb_key, body, header)
        try:
            try:
                os.unlink(SUPERBLOCK_TMP, dir_fd=self._dirfd)
            except FileNotFoundError:
                pass
            self._write_file(SUPERBLOCK_TMP, header + blob)
            self._step("superblock-written")
            os.rename(SUPERBLOCK_TMP, SUPERBLOCK, src_dir_fd=self._dirfd, dst_dir_fd=self._dirfd)
            self._step("superblock-renamed")
            self.sync_dir()
        except OSError as e:
            raise self.error(f"writing the superblock: {e.strerror}", e.errno)
        self._step("superblock-synced")

    # --- the format marker -------------------------------------------------------------------------

    def has_marker(self) -> bool:
        return FORMATTING in self.listing()

    def set_marker(self) -> None:
        """Say "a format is under way": a crash before its superblock may then be re-formatted."""
        fd = os.open(FORMATTING, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600, dir_fd=self._dirfd)
        os.fsync(fd)
        os.close(fd)
        self.sync_dir()

    def clear_marker(self) -> None:
        try:
            os.unlink(FORMATTING, dir_fd=self._dirfd)
        except FileNotFoundError:
            pass
