"""The broker's secret store: one file per secret, encrypted at rest.

Layout of a store directory::

    broker.key            32 random bytes, mode 0600 (refused if group or others can read it)
    secrets/<name>.json   {"name", "policy": {...}, "sealed": base64}

The store key is derived from ``broker.key`` (HKDF, label "kbs store"), and each secret is
sealed (AES-256-GCM, ``crypto.aead``) under a key derived for its name, with its name and
policy as associated data: editing the policy on disk, or renaming the file, makes the entry
refuse to open instead of releasing the secret under another policy.

Why a broker key file and not the platform's sealing key: the broker is the relying party,
normally on another machine than the enclaves it judges; tying its store to the simulated
platform key would make whoever holds that key (the host the enclaves run on) able to open
the store. The key file is the broker's own, kept by its operator.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from occlum.crypto.aead import IntegrityError, open_sealed, seal
from occlum.crypto.kdf import derive_key
from occlum.enclave.quote import QuotePolicy
from occlum.errors import UserError

KEY_NAME = "broker.key"
SECRETS = "secrets"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


class StoreError(UserError):
    """A store, a key file or an entry that cannot be used; the message says which."""


@dataclass(slots=True, frozen=True)
class SecretPolicy:
    """Who may receive a secret. Hex strings as stored; None is not checked."""

    mrenclave: str | None = None
    mrsigner: str | None = None
    isv_prod_id: int | None = None
    min_isv_svn: int | None = None
    allow_debug: bool = False

    def __post_init__(self) -> None:
        if self.mrenclave is None and self.mrsigner is None:
            raise StoreError("a secret's policy needs an MRENCLAVE or an MRSIGNER (or both)")
        for what, value in (("MRENCLAVE", self.mrenclave), ("MRSIGNER", self.mrsigner)):
            if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
                raise StoreError(f"{what} {value!r} is not 64 lowercase hex digits")
        for what, num in (("ISVPRODID", self.isv_prod_id), ("ISVSVN", self.min_isv_svn)):
            if num is not None and not 0 <= num <= 0xFFFF:
                raise StoreError(f"{what} {num} is out of range 0..65535")

    def quote_policy(self, trusted_root: bytes) -> QuotePolicy:
        return QuotePolicy(
            trusted_root=trusted_root,
            mrenclave=None if self.mrenclave is None else bytes.fromhex(self.mrenclave),
            mrsigner=None if self.mrsigner is None else bytes.fromhex(self.mrsigner),
            isv_prod_id=self.isv_prod_id,
            min_isv_svn=self.min_isv_svn,
            allow_debug=self.allow_debug,
        )

    def describe(self) -> str:
        parts = []
        if self.mrenclave:
            parts.append(f"mrenclave={self.mrenclave}")
        if self.mrsigner:
            parts.append(f"mrsigner={self.mrsigner}")
        if self.isv_prod_id is not None:
            parts.append(f"isv-prod-id={self.isv_prod_id}")
        if self.min_isv_svn is not None:
            parts.append(f"min-isv-svn={self.min_isv_svn}")
        parts.append("debug allowed" if self.allow_debug else "no debug")
        return " ".join(parts)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise StoreError(
            f"secret name {name!r}: 1-64 of A-Z a-z 0-9 . _ - and not starting with a dot"
        )
    return name


def _aad(name: str, policy: SecretPolicy) -> bytes:
    return json.dumps({"name": name, "policy": asdict(policy)}, sort_keys=True).encode()


class SecretStore:
    """A store directory; ``create`` makes it and its key on first use."""

    def __init__(self, root: Path, *, create: bool = False) -> None:
        self.root = root
        self._master = self._load_key(create)

    def _load_key(self, create: bool) -> bytes:
        path = self.root / KEY_NAME
        try:
            if create and not path.exists():
                (self.root / SECRETS).mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(os.urandom(32))
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StoreError(f"{self.root} is not a key broker store (no {KEY_NAME})")
        except OSError as e:
            raise StoreError(f"cannot open the broker key {path}: {e.strerror}")
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise StoreError(
                    f"the broker key {path} is readable by others (mode {mode & 0o777:o}): "
                    "chmod 600 it"
                )
            key = f.read()
        if len(key) != 32:
            raise StoreError(f"the broker key {path} is {len(key)} bytes, not 32")
        return derive_key(key, b"kbs store", b"")

    def _path(self, name: str) -> Path:
        return self.root / SECRETS / f"{check_name(name)}.json"

    def add(self, name: str, secret: bytes, policy: SecretPolicy) -> None:
        """Store (or replace) ``name``: written whole under a temporary name, then renamed."""
        path = self._path(name)
        sealed = seal(
            derive_key(self._master, b"kbs secret", name.encode()), secret, _aad(name, policy)
        )
        entry = {
            "name": name,
            "policy": asdict(policy),
            "sealed": base64.b64encode(bytes(sealed)).decode(),
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f, indent=1, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise StoreError(f"cannot write {path}: {e.strerror}")

    def names(self) -> list[str]:
        try:
            files = sorted((self.root / SECRETS).glob("*.json"))
        except OSError as e:
            raise StoreError(f"cannot list {self.root / SECRETS}: {e.strerror}")
        return [p.stem for p in files if not p.name.startswith(".")]

    def policy(self, name: str) -> SecretPolicy:
        return self._entry(name)[0]

    def _entry(self, name: str) -> tuple[SecretPolicy, bytes]:
        path = self._path(name)
        try:
            entry = json.loads(path.read_text())
            if entry["name"] != name:
                raise ValueError("it names another secret")
            policy = SecretPolicy(**entry["policy"])
            sealed = base64.b64decode(entry["sealed"], validate=True)
        except FileNotFoundError:
            raise KeyError(name)
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror}")
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(f"store entry {path} is damaged: {e}")
        return policy, sealed

    def open(self, name: str) -> tuple[SecretPolicy, bytes]:
        """The policy and the plaintext of ``name``; ``KeyError`` if there is none."""
        policy, sealed = self._entry(name)
        key = derive_key(self._master, b"kbs secret", name.encode())
        try:
            return policy, open_sealed(key, sealed, _aad(name, policy))
        except IntegrityError:
            raise StoreError(f"store entry {name!r} does not open: altered, or another broker key")
