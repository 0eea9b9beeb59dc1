"""The simulated platform's keys: the platform key, sealing keys, and user image keys.

On SGX hardware every key an enclave can obtain (``EGETKEY``) is derived inside the CPU from a
fused root key plus the enclave's identity, so an enclave can seal data that only the same
enclave (policy MRENCLAVE) or enclaves of the same signer and product (policy MRSIGNER) can
unseal. In simulation mode the root key is a *platform key file*: 32 random bytes created on
first use with mode 0600, at ``$OCCLUM_PLATFORM_KEY`` or ``~/.occlum/platform.key``. Anyone
who can read that file can derive every sealing key of the machine; that is what "simulation"
means, and why a file readable by others is refused rather than used.

Image keys are the user's own keys for encrypted images (``occlum gen-image-key``). Occlum
writes them as 16 random bytes in lower-case hex pairs joined by dashes
(``c7-32-b3-...``, 47 characters and a newline); we write and read the same format.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Literal

from occlum.crypto.kdf import derive_key
from occlum.errors import UserError

PLATFORM_KEY_ENV = "OCCLUM_PLATFORM_KEY"
PLATFORM_KEY_BYTES = 32
SEALING_LABEL = b"occlum-python/sim sealing key v1 "
IMAGE_KEY_BYTES = 16
IMAGE_KEY_SIZES = (16, 32)

SealPolicy = Literal["MRENCLAVE", "MRSIGNER"]


# --- the platform key -----------------------------------------------------------------------


def platform_key_path() -> Path:
    """Where the platform key lives: ``$OCCLUM_PLATFORM_KEY``, else ``~/.occlum/platform.key``."""
    configured = os.environ.get(PLATFORM_KEY_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.occlum/platform.key").expanduser()


def load_platform_key(path: Path | None = None, *, create: bool = True) -> bytes:
    """The platform key at ``path`` (default ``platform_key_path()``), created if missing and
    ``create`` is true. A key that is not a 0600-style private regular file of 32 bytes is
    refused with one ``UserError`` line."""
    path = platform_key_path() if path is None else path
    try:
        return _read_platform_key(path)
    except FileNotFoundError:
        if not create:
            raise UserError(
                f"the platform key {path} is missing: keys sealed on this platform cannot be "
                f"derived without it (restore it, or set {PLATFORM_KEY_ENV})"
            )
    _create_platform_key(path)
    return _read_platform_key(path)


def _read_platform_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise UserError(f"cannot open the platform key {path}: {e.strerror}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UserError(f"the platform key {path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise UserError(
                f"the platform key {path} is accessible by other users (mode {mode:04o}): "
                f"refusing to use it; `chmod 600 {path}` if it was not exposed"
            )
        data = f.read(PLATFORM_KEY_BYTES + 1)
    if len(data) != PLATFORM_KEY_BYTES:
        size = str(len(data)) if len(data) < PLATFORM_KEY_BYTES else "more than 32"
        raise UserError(
            f"the platform key {path} is {size} bytes long, not {PLATFORM_KEY_BYTES}: "
            "it is damaged or not a platform key"
        )
    return data


def _create_platform_key(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {path.parent} for the platform key: {e.strerror}")
    # written whole under a temporary name, then linked into place: a concurrent first use
    # either wins the link or reads the winner's complete key, never a half-written one
    _write_private_file(path, secrets.token_bytes(PLATFORM_KEY_BYTES), what="the platform key")


def _write_private_file(path: Path, data: bytes, *, what: str, force: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, whole or not at all. Without ``force`` an
    existing ``path`` is left alone: the platform key is then someone else's first use (theirs
    is used), any other file is refused."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError:
        if what != "the platform key":
            raise UserError(f"{path} already exists: not overwriting it (use --force)")
    except OSError as e:
        raise UserError(f"cannot write {what} {path}: {e.strerror}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# --- sealing keys ---------------------------------------------------------------------------


def sealing_key(
    platform_key: bytes,
    policy: SealPolicy,
    mrenclave: bytes,
    mrsigner: bytes,
    label: bytes,
    *,
    isv_prod_id: int = 0,
) -> bytes:
    """A 32-byte key bound to the platform and to the enclave's identity, as ``EGETKEY`` gives.

    Policy ``MRENCLAVE`` binds the key to this exact enclave (LibOS, config and images);
    ``MRSIGNER`` to every enclave of the same signer and product (``isv_prod_id``), so it
    survives rebuilds. ``label`` separates keys for different uses (one per volume, say).
    """
    if len(platform_key) != PLATFORM_KEY_BYTES:
        raise ValueError(f"platform key must be {PLATFORM_KEY_BYTES} bytes")
    if len(mrenclave) != 32 or len(mrsigner) != 32:
        raise ValueError("mrenclave and mrsigner must be 32 bytes each")
    # the identity has a fixed length per policy, so identity + label cannot be re-split
    if policy == "MRENCLAVE":
        identity = mrenclave
    elif policy == "MRSIGNER":
        identity = mrsigner + isv_prod_id.to_bytes(2, "little")
    else:
        raise ValueError(f"unknown sealing policy {policy!r} (MRENCLAVE or MRSIGNER)")
    return derive_key(platform_key, SEALING_LABEL + policy.encode(), identity + label)


# --- image keys -----------------------------------------------------------------------------


def gen_image_key(nbytes: int = IMAGE_KEY_BYTES) -> bytes:
    """A fresh random image key (Occlum's are 128-bit)."""
    if nbytes not in IMAGE_KEY_SIZES:
        raise ValueError(f"an image key is 16 or 32 bytes, not {nbytes}")
    return secrets.token_bytes(nbytes)


def format_image_key(key: bytes) -> str:
    """Occlum's key-file text: ``"c7-32-b3-...-9e\\n"``."""
    return "-".join(f"{b:02x}" for b in key) + "\n"


def write_image_key(path: Path, key: bytes | None = None, *, force: bool = False) -> bytes:
    """Write ``key`` (a fresh one if None) to ``path`` in Occlum's format, mode 0600; refuse to
    replace an existing file unless ``force``. Returns the key."""
    key = gen_image_key() if key is None else key
    if len(key) not in IMAGE_KEY_SIZES:
        raise ValueError(f"an image key is 16 or 32 bytes, not {len(key)}")
    if not force and os.path.lexists(path):
        raise UserError(f"{path} already exists: not overwriting it (use --force)")
    if not path.parent.is_dir():
        raise UserError(f"cannot write the image key {path}: {path.parent} is not a directory")
    _write_private_file(path, format_image_key(key).encode(), what="the image key", force=force)
    return key


def parse_image_key(text: str, source: str = "the image key") -> bytes:
    """Parse Occlum's dashed hex (dashes optional) into a 16- or 32-byte key."""
    compact = text.strip().replace("-", "")
    try:
        key = bytes.fromhex(compact)
    except ValueError:
        key = b""
    if len(key) not in IMAGE_KEY_SIZES or len(compact) != 2 * len(key):
        raise UserError(
            f"{source} is not an image key: expected 16 (or 32) bytes as hex pairs like "
            "c7-32-b3-... (make one with `occlum gen-image-key FILE`)"
        )
    return key


def load_image_key(path: Path) -> bytes:
    """Read an image key file written by ``occlum gen-image-key`` (ours or Occlum's)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(4096)
    except FileNotFoundError:
        raise UserError(
            f"the image key {path} does not exist (make one with `occlum gen-image-key`)"
        )
    except IsADirectoryError:
        raise UserError(f"the image key {path} is a directory")
    except OSError as e:
        raise UserError(f"cannot read the image key {path}: {e.strerror}")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = "?"
    return parse_image_key(text, f"the image key {path}")
