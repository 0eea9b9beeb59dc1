"""What the ``occlum run`` client and the zygote share: where the zygote listens, and the
messages on a connection (standard library only: the client imports nothing heavier).

A connection is a ``SOCK_STREAM`` Unix socket. The client sends one request: a 4-byte
little-endian length and that many bytes of NUL-separated fields (a tag, the client's
:func:`identity`, its umask in octal, the argument count, the arguments, then the
environment's ``NAME=value`` entries; none of them can hold a NUL), with its
descriptors 0, 1, 2 and its working directory (an ``O_PATH`` descriptor) attached to the
first bytes as ``SCM_RIGHTS``. Then, on the client's side, ``S`` and a signal number for each
signal it relays. From the zygote's side: ``F`` (declined: run directly; nothing has run),
``R`` (the run started: its outcome is the zygote's), then ``X`` and the run's wait status
(4 bytes, little-endian) when it ended.
"""

from __future__ import annotations

import os
import sys

import occlum

DISABLE_ENV = "OCCLUM_NO_ZYGOTE"  # "1": every `occlum run` takes the direct path
IDLE_ENV = "OCCLUM_ZYGOTE_IDLE"  # seconds without a run before the zygote ends (default 300)
CACHE_ENV = "OCCLUM_ZYGOTE_CACHE_BYTES"  # the verified image files it keeps (default 256 MiB)
DEFAULT_IDLE = 300.0
DEFAULT_CACHE_BYTES = 256 << 20
MAX_REQUEST = 4 << 20  # argv and environment together stay far below this (ARG_MAX: 2 MiB)
REQUEST_FDS = 4  # stdin, stdout, stderr, the working directory

DECLINED = b"F"
STARTED = b"R"
EXITED = b"X"
SIGNAL = b"S"
STALE_EXIT = b"stale"  # what a zygote answers the start pipe when another one holds the lock


def package_dir() -> str:
    """The directory of the LibOS package this interpreter imports."""
    return os.path.dirname(os.path.abspath(occlum.__file__))


def identity() -> bytes:
    """The interpreter, the LibOS package directory and its version: a zygote serves only
    clients that would run the very same code (it checks the request's copy)."""
    return os.fsencode("\n".join((sys.executable, package_dir(), occlum.__version__)))


def zygote_key() -> str:
    """The socket's name for :func:`identity` (FNV-1a, 64 bits: ``hashlib`` costs the client
    more than the whole request; a collision only makes the zygote decline)."""
    h = 0xCBF29CE484222325
    for byte in identity():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def zygote_dir() -> str | None:
    """The user's directory of zygote sockets (made 0700 if missing), or None when it is not
    safely ours: not a directory, a symlink, someone else's, or open to others."""
    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = (
        os.path.join(runtime, "occlum")
        if runtime and os.path.isabs(runtime)
        else f"/tmp/occlum-zygote-{uid}"
    )
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(base)
    except OSError:
        return None
    if not ((st.st_mode & 0o170000) == 0o040000 and st.st_uid == uid and (st.st_mode & 0o077) == 0):
        return None
    return base


REQUEST_TAG = b"occlum-run-1"


def encode_request(argv: list[bytes], env: list[bytes], umask: int) -> bytes:
    """The request (length prefix included); ``env`` holds ``NAME=value`` entries."""
    body = b"\0".join([REQUEST_TAG, identity(), b"%o" % umask, b"%d" % len(argv), *argv, *env])
    return len(body).to_bytes(4, "little") + body


def decode_request(body: bytes) -> tuple[bytes, list[bytes], dict[bytes, bytes], int]:
    """(identity, argv, environment, umask) of a request's body; ``ValueError`` if malformed."""
    fields = body.split(b"\0")
    if len(fields) < 4 or fields[0] != REQUEST_TAG:
        raise ValueError("not a run request")
    ident, umask, count = fields[1], int(fields[2], 8), int(fields[3])
    if not 0 <= umask <= 0o777 or not 0 <= count <= len(fields) - 4:
        raise ValueError("bad umask or argument count")
    argv = fields[4 : 4 + count]
    env: dict[bytes, bytes] = {}
    for item in fields[4 + count :]:
        name, eq, value = item.partition(b"=")
        if not eq or not name:
            raise ValueError("bad environment entry")
        env.setdefault(name, value)  # the first of a repeated name, as getenv finds it
    return ident, argv, env, umask
