"""Sealing a build: measure, sign and record the enclave in ``build/``; check it before a run.

``occlum build`` ends with ``seal_build``: it computes MRENCLAVE over the running LibOS, the
measured configuration and the images' root hashes, signs it (with ``--sign-key`` or the
instance's development key) and writes ``build/sigstruct.json``. ``occlum run`` starts with
``verify_build``, our ``EINIT``: the enclave it is about to start must measure to the signed
MRENCLAVE and the signature must verify, or nothing runs.

Files written here::

    build/sigstruct.json         the signed SIGSTRUCT (see ``enclave.sigstruct``)
    build/dev_signing_key.pem    the development key (0600), made once per instance when no
                                 key is given, as Occlum signs with its template Enclave.pem
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from occlum.crypto.sign import generate_signing_key
from occlum.enclave.measure import libos_digest, mrenclave
from occlum.enclave.sigstruct import Measured, Sigstruct, sign_enclave, verify_sigstruct
from occlum.errors import UserError

SIGSTRUCT_NAME = "sigstruct.json"
DEV_KEY_NAME = "dev_signing_key.pem"
NOT_BUILT = "instance not built: run `occlum build` first"


def seal_build(
    build_dir: Path,
    config_bytes: bytes,
    image_root_hashes: Mapping[str, str],
    metadata: Mapping[str, object],
    sign_key_pem: bytes | None,
    *,
    sign_key_source: str = "the signing key",
) -> Sigstruct:
    """Measure and sign the build, write ``build_dir/sigstruct.json``, return the SIGSTRUCT.

    ``config_bytes`` must be the exact bytes ``verify_build`` will be given at run time (the
    measured configuration), ``metadata`` Occlum.json's ``metadata`` section. Errors about a
    given key name it as ``sign_key_source`` (pass the --sign-key path).
    """
    measured = Measured(
        libos_digest=libos_digest().hex(),
        config_sha256=hashlib.sha256(config_bytes).hexdigest(),
        image_root_hashes=dict(image_root_hashes),
    )
    mre = mrenclave(libos_digest(), config_bytes, image_root_hashes)
    if sign_key_pem is None:
        key_pem, source = (
            dev_signing_key(build_dir),
            f"the development key {build_dir / DEV_KEY_NAME}",
        )
    else:
        key_pem, source = sign_key_pem, sign_key_source
    sig = sign_enclave(mre, metadata, key_pem, measured=measured, key_source=source)
    _write_atomically(build_dir / SIGSTRUCT_NAME, sig.to_json().encode(), 0o644)
    return sig


def dev_signing_key(build_dir: Path) -> bytes:
    """The instance's development signing key, generated on first use (mode 0600)."""
    path = build_dir / DEV_KEY_NAME
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise UserError(f"cannot read the development key {path}: {e.strerror}")
    pem = generate_signing_key()
    _write_atomically(path, pem, 0o600)
    return pem


def read_sigstruct(build_dir: Path) -> Sigstruct:
    """The SIGSTRUCT of the build, signature checked; ``UserError`` if not built or damaged."""
    path = build_dir / SIGSTRUCT_NAME
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UserError(NOT_BUILT)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}")
    sig = Sigstruct.from_json(text, f"build/{SIGSTRUCT_NAME}")
    verify_sigstruct(sig)
    return sig


def read_measurement(build_dir: Path) -> tuple[str, str]:
    """(MRENCLAVE hex, MRSIGNER hex) of the build, as ``occlum print`` shows them."""
    sig = read_sigstruct(build_dir)
    return sig.mrenclave.hex(), sig.mrsigner.hex()


def verify_build(
    build_dir: Path, config_bytes: bytes, image_root_hashes: Mapping[str, str]
) -> Sigstruct:
    """Our ``EINIT``: MRENCLAVE recomputed from the running LibOS and the given configuration
    and images must equal the signed one, and the signature must verify."""
    sig = read_sigstruct(build_dir)
    current = mrenclave(libos_digest(), config_bytes, image_root_hashes)
    if current != sig.mrenclave:
        raise UserError(f"{_what_changed(sig.measured, config_bytes, image_root_hashes)}")
    return sig


def _what_changed(
    measured: Measured, config_bytes: bytes, image_root_hashes: Mapping[str, str]
) -> str:
    # the unsigned record of the inputs only names the culprit; the decision was already
    # made on the signed MRENCLAVE
    suffix = "(MRENCLAVE mismatch): run `occlum build`"
    if measured.libos_digest and measured.libos_digest != libos_digest().hex():
        return f"the LibOS (the occlum package) changed since `occlum build` {suffix}"
    if (
        measured.config_sha256
        and measured.config_sha256 != hashlib.sha256(config_bytes).hexdigest()
    ):
        return f"Occlum.json changed since `occlum build` {suffix}"
    if measured.image_root_hashes and dict(measured.image_root_hashes) != dict(image_root_hashes):
        names = sorted(
            set(measured.image_root_hashes) ^ set(image_root_hashes)
            | {
                n
                for n in set(measured.image_root_hashes) & set(image_root_hashes)
                if measured.image_root_hashes[n] != image_root_hashes[n]
            }
        )
        if "image_type" in names:  # not an image: what the root image is
            return f"the image type (encrypted or not) changed since `occlum build` {suffix}"
        return f"the {', '.join(names)} file system changed since `occlum build` {suffix}"
    return f"the image or Occlum.json changed since `occlum build` {suffix}"


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        # before any byte is written: O_CREAT's mode passes through the umask and does not
        # apply to a leftover file, and the key must never be readable by others
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
