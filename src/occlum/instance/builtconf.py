"""The built configuration as ``occlum run`` reads it, without the schema library.

``occlum build`` validates ``Occlum.json`` (:mod:`occlum.instance.config`, pydantic) and writes
the result, every default filled in, as ``build/Occlum.json.built``, whose bytes are measured
into MRENCLAVE. A run therefore needs no validation: it reads that JSON as it is, after the
measurement has vouched for its bytes (``runspec``), and importing pydantic, which cost a run
about a third of its start-up, is left to the commands that validate. The rules a run applies
(entry points, environment, mounts) live here once; ``config.py`` applies the same functions
to a validated file.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occlum.errors import UserError
from occlum.kernel.spec import MountSpec

CONFIG_NAME = "Occlum.json"
LOG_LEVELS = ("off", "error", "warn", "info", "debug", "trace")
SIZE_RE = re.compile(r"^\s*(\d+)\s*(TB|GB|MB|KB|B)\s*$", re.IGNORECASE)
SIZE_FACTORS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_SUPPORTED_MOUNTS = ("hostfs", "sefs", "ramfs", "devfs", "procfs")
# Occlum mounts these itself in the application stage (gen_internal_conf adds them).
_IMPLICIT_MOUNTS = (MountSpec("/proc", "procfs"), MountSpec("/dev", "devfs"))


def size_bytes(value: object) -> int | None:
    """An Occlum memory size (``"256MB"``, ``"4KB"``) in bytes; None if it is not one."""
    if not isinstance(value, str):
        return None
    m = SIZE_RE.match(value)
    return None if m is None else int(m.group(1)) * SIZE_FACTORS[m.group(2).upper()]


def check_entry_point(entry_points: Sequence[str], path: str) -> str:
    """The normalized program path, if it lies under an entry point; else ``UserError``."""
    if not path.startswith("/"):
        raise UserError(f"program path must be absolute inside the LibOS: {path} (e.g. /{path})")
    norm = posixpath.normpath(path).replace("//", "/")
    for ep in entry_points:
        if ep == "/" or norm == ep or norm.startswith(ep.rstrip("/") + "/"):
            return norm
    eps = ", ".join(entry_points) or "none configured"
    raise UserError(
        f"{path} is not under any entry point ({eps}); see entry_points in {CONFIG_NAME}"
    )


def build_env(
    default: Sequence[str], untrusted: Sequence[str], host_env: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """``env.default``, then the host values of the names in ``env.untrusted`` (they win)."""
    env: dict[str, str] = {}
    for item in default:
        name, _, value = item.partition("=")
        env[name] = value
    for name in untrusted:
        if name in host_env:
            env[name] = host_env[name]
    return tuple(env.items())


def log_level_from_env(host_env: Mapping[str, str], default: str = "warn") -> str:
    level = host_env.get("OCCLUM_LOG_LEVEL", "").strip().lower()
    if not level:
        return default
    if level == "warning":
        level = "warn"
    if level not in LOG_LEVELS:
        raise UserError(
            f"OCCLUM_LOG_LEVEL={level!r} is not a log level (use one of {', '.join(LOG_LEVELS)})"
        )
    return level


def plan_mounts(
    mounts: Sequence[Mapping[str, Any]], instance_dir: str | os.PathLike[str]
) -> tuple[MountSpec, ...]:
    """The non-root mounts for the kernel (``mounts``: the ``mount`` list as validated JSON);
    the root is the built image. Raises ``UserError`` for a mount our kernel cannot provide."""
    base = Path(instance_dir).resolve()
    specs: list[MountSpec] = []
    for m in mounts:
        target, kind, options = m["target"], m["type"], m.get("options") or {}
        if target == "/":
            if kind not in ("sefs", "unionfs"):
                raise UserError(
                    f'mount type {kind} at "/" is not supported (the root must be unionfs or sefs)'
                )
            continue
        if kind not in _SUPPORTED_MOUNTS:
            raise UserError(f"mount type {kind} at {target} is not supported yet")
        source = None
        if kind == "hostfs":
            assert m.get("source") is not None  # checked by config.Mount._per_type
            source = str((base / os.path.expandvars(m["source"])).resolve())
        elif kind == "sefs":
            default = "./run/mount/" + (target.strip("/").replace("/", "_") or "__ROOT")
            source = str((base / os.path.expandvars(m.get("source") or default)).resolve())
        specs.append(
            MountSpec(
                target, kind, source, bool(options.get("readonly", False)),
                temporary=bool(options.get("temporary", False)),
                mac_only=bool(options.get("integrity_only")) or options.get("MAC") is not None,
            )
        )  # fmt: skip
    targets = {s.target for s in specs}
    implicit = [s for s in _IMPLICIT_MOUNTS if s.target not in targets]
    return (*implicit, *specs)


@dataclass(frozen=True, slots=True)
class BuiltConfig:
    """The fields of a built configuration a run uses (see the module's text)."""

    entry_points: tuple[str, ...]
    env_default: tuple[str, ...]
    env_untrusted: tuple[str, ...]
    mounts: tuple[dict[str, Any], ...]
    network: str
    max_threads: int
    user_space_size: int
    user_space_max_size: int | None
    kernel_space_heap_size: int
    default_stack_size: int
    default_heap_size: int
    default_mmap_size: int

    @classmethod
    def from_bytes(cls, data: bytes, label: str) -> BuiltConfig:
        """Raises ``UserError`` naming ``label`` for a file ``occlum build`` did not write."""
        try:
            raw = json.loads(data)
            rl, proc, env = raw["resource_limits"], raw["process"], raw["env"]
            sizes = {
                name: size_bytes(section[name])
                for section, names in (
                    (rl, ("user_space_size", "kernel_space_heap_size")),
                    (proc, ("default_stack_size", "default_heap_size", "default_mmap_size")),
                )
                for name in names
            }
            max_size = rl.get("user_space_max_size")
            lists = (raw["entry_points"], env["default"], env["untrusted"], raw["mount"])
            if not all(isinstance(v, list) for v in lists):
                raise ValueError("a list of the wrong type")
            built = cls(
                entry_points=tuple(raw["entry_points"]),
                env_default=tuple(env["default"]),
                env_untrusted=tuple(env["untrusted"]),
                mounts=tuple(raw["mount"]),
                network=raw["feature"]["network"],
                max_threads=rl["max_num_of_threads"],
                user_space_size=sizes["user_space_size"],  # type: ignore[arg-type]
                user_space_max_size=None if max_size is None else size_bytes(max_size),
                kernel_space_heap_size=sizes["kernel_space_heap_size"],  # type: ignore[arg-type]
                default_stack_size=sizes["default_stack_size"],  # type: ignore[arg-type]
                default_heap_size=sizes["default_heap_size"],  # type: ignore[arg-type]
                default_mmap_size=sizes["default_mmap_size"],  # type: ignore[arg-type]
            )
            if (
                None in sizes.values()
                or (max_size is not None and built.user_space_max_size is None)
                or not isinstance(built.max_threads, int)
                or not all(isinstance(s, str) for s in (*built.entry_points, *built.env_default))
                or not all(isinstance(s, str) for s in built.env_untrusted)
                or not all(isinstance(m, dict) and isinstance(m.get("target"), str)
                           and isinstance(m.get("type"), str) for m in built.mounts)
                or not isinstance(built.network, str)
            ):  # fmt: skip
                raise ValueError("a field of the wrong type")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise UserError(f"{label}: malformed; run `occlum build`")
        return built

    def mount_options(self, target: str) -> dict[str, Any]:
        m = next((m for m in self.mounts if m["target"] == target), None)
        return dict(m.get("options") or {}) if m is not None else {}

    def root_upper_layer(self, instance_dir: Path) -> tuple[str, int | None] | None:
        """The storage of the root's writable layer (the unionfs layer that is not the image,
        the one without ``MAC``: Occlum's ``./run/mount/__ROOT``) and its ``autokey_policy``;
        None if the root has no such layer."""
        root = next((m for m in self.mounts if m["target"] == "/"), None)
        layers = (root.get("options") or {}).get("layers") if root is not None else None
        if root is None or root["type"] != "unionfs" or not layers:
            return None
        writable = [la for la in layers if (la.get("options") or {}).get("MAC") is None]
        if not writable:
            return None
        layer = writable[-1]
        source = layer.get("source") or "./run/mount/__ROOT"
        path = str((Path(instance_dir) / os.path.expandvars(source)).resolve())
        return path, (layer.get("options") or {}).get("autokey_policy")
