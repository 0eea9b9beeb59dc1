"""The enclave's measurement: the LibOS digest and MRENCLAVE.

On SGX hardware the CPU computes MRENCLAVE while the enclave is built: ``ECREATE`` starts a
SHA-256, every ``EADD``/``EEXTEND`` appends a record naming what was loaded and where, and
``EINIT`` finalizes it. Anything that changes the enclave's code or initial data changes the
hash. We reproduce that log in software, record by record, over what our enclave is made of:

1. ``ECREATE``  the domain tag ``occlum-python/sim`` and the measurement format version;
2. ``EEXTEND libos``  the LibOS digest: every file of the installed ``occlum`` package;
3. ``EEXTEND config``  the canonical (normalized, measured) configuration bytes;
4. ``EEXTEND image:<name>``  each file-system image's root hash, in sorted name order; the
   same map carries ``image_type`` (``encrypted`` or ``integrity-only``, what ``occlum run``
   must mount the root image as), measured the same way, as ``image:image_type``.

Each record is ``op (8 bytes) | len(name) u64 | name | len(data) u64 | data`` so that no two
different logs can produce the same byte stream. Because an image's root hash is the top of a
Merkle tree over its blocks, one changed byte of an image changes MRENCLAVE.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections.abc import Mapping
from pathlib import Path

MEASUREMENT_VERSION = 1
DOMAIN_TAG = b"occlum-python/sim"
LIBOS_DIGEST_TAG = b"occlum-python libos digest v1\0"


def _record(h: hashlib._Hash, op: bytes, name: bytes, data: bytes) -> None:
    h.update(op.ljust(8, b"\0"))
    h.update(struct.pack("<Q", len(name)))
    h.update(name)
    h.update(struct.pack("<Q", len(data)))
    h.update(data)


def package_root() -> Path:
    """The directory of the installed ``occlum`` package (the code that runs as the LibOS)."""
    return Path(__file__).resolve().parent.parent


def _libos_files(root: Path) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # bytecode is derived from the sources (and written behind our back by the
        # interpreter); measuring it would make MRENCLAVE depend on what happened to run
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            full = Path(dirpath) / name
            files.append((full.relative_to(root).as_posix(), full))
    files.sort(key=lambda item: item[0].encode())
    return files


def compute_libos_digest(root: Path) -> bytes:
    """SHA-256 over every file below ``root`` (sorted by relative path; path and content each
    length-prefixed), ignoring ``__pycache__``. ``libos_digest`` caches this for the package."""
    h = hashlib.sha256(LIBOS_DIGEST_TAG)
    for rel, full in _libos_files(root):
        data = full.read_bytes()
        h.update(struct.pack("<Q", len(rel.encode())))
        h.update(rel.encode())
        h.update(struct.pack("<Q", len(data)))
        h.update(data)
    return h.digest()


@functools.cache
def libos_digest() -> bytes:
    """The digest of the LibOS as installed, computed once per process: a process runs the code
    it imported at start, so a later edit on disk is a different LibOS for the next process."""
    return compute_libos_digest(package_root())


def mrenclave(
    libos_digest: bytes, config_bytes: bytes, image_root_hashes: Mapping[str, str]
) -> bytes:
    """MRENCLAVE (32 bytes) of an enclave made of this LibOS, configuration and images.

    ``image_root_hashes`` maps an image name (``"image"``, ``"initfs"``) to its root hash as
    text, and ``"image_type"`` to the root image's type; the text is measured as given (UTF-8),
    so callers must spell a hash the same way every time (lower-case hex).
    """
    if len(libos_digest) != 32:
        raise ValueError(f"libos digest must be 32 bytes, not {len(libos_digest)}")
    h = hashlib.sha256()
    _record(h, b"ECREATE", DOMAIN_TAG, struct.pack("<I", MEASUREMENT_VERSION))
    _record(h, b"EEXTEND", b"libos", libos_digest)
    _record(h, b"EEXTEND", b"config", config_bytes)
    for name in sorted(image_root_hashes):
        _record(h, b"EEXTEND", b"image:" + name.encode(), image_root_hashes[name].encode())
    return h.digest()
