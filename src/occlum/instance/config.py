"""``Occlum.json``: loading, validation, the default template and the plan of mounts and
environment a run uses (``instance/runspec.py`` turns a built instance into a ``RunSpec``).

The schema follows Occlum's (``resource_limits``, ``process``, ``entry_points``, ``env``,
``metadata``, ``feature``, ``mount``) so that an Occlum user's file loads unchanged. Every section
is optional here and defaults to the value of Occlum's template. Keys we do not know are
reported as warnings, one line each, never as errors: Occlum grows keys over releases and a
newer file must still load. Every error is one line naming the JSON path, the value and what
is allowed.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from occlum.errors import UserError
from occlum.instance import builtconf
from occlum.instance._validation import (
    FieldProblem,
    describe_error,
    format_size,
    iter_unknown_keys,
    parse_size,
)
from occlum.instance.builtconf import CONFIG_NAME as CONFIG_NAME
from occlum.instance.builtconf import LOG_LEVELS as LOG_LEVELS
from occlum.instance.builtconf import log_level_from_env as log_level_from_env
from occlum.kernel.spec import MountSpec

MB = 1 << 20

Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, return_type=str)]
"""A memory size: written ``"256MB"`` in the file, held in bytes."""


def _check_abs_path(value: object) -> object:
    if not isinstance(value, str):
        return value  # the str validator reports the type
    if not value.startswith("/"):
        raise FieldProblem("is not an absolute path (it must start with /)")
    if "\0" in value:
        raise FieldProblem("contains a NUL byte")
    return posixpath.normpath(value).replace("//", "/")


AbsPath = Annotated[str, BeforeValidator(_check_abs_path)]


def _check_host_path(value: object) -> object:
    if isinstance(value, str) and "\0" in value:
        raise FieldProblem("contains a NUL byte")  # no host path can: the OS would refuse it
    return value


HostPath = Annotated[str, BeforeValidator(_check_host_path)]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_assignment(value: object) -> object:
    if not isinstance(value, str):
        return value
    name, eq, _ = value.partition("=")
    if not eq:
        raise FieldProblem('is not an assignment (use "NAME=value")')
    if not name or "\0" in value:
        raise FieldProblem('is not an assignment (use "NAME=value")')
    return value


def _check_env_name(value: object) -> object:
    if isinstance(value, str) and (not value or "=" in value or "\0" in value):
        raise FieldProblem("is not an environment variable name")
    return value


EnvAssignment = Annotated[str, BeforeValidator(_check_env_assignment)]
EnvName = Annotated[str, BeforeValidator(_check_env_name)]


def _check_hex_u64(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(r"0[xX][0-9a-fA-F]{1,16}", value):
        raise FieldProblem('is not a 64-bit hex number (use e.g. "0x0")')
    return value


HexU64 = Annotated[str, BeforeValidator(_check_hex_u64)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, validate_default=False)


# x86-64's user address space with 4-level page tables (47 bits); with 5-level ones the kernel
# still maps nothing above it unless a program asks with an address hint
USER_ADDRESS_SPACE = 1 << 47


class ResourceLimits(_Section):
    user_space_size: Size = 300 * MB
    user_space_max_size: Size | None = None
    kernel_space_heap_size: Size = 32 * MB
    kernel_space_heap_max_size: Size | None = None
    kernel_space_stack_size: Size = 1 * MB
    max_num_of_threads: int = Field(32, ge=1, le=65536)
    init_num_of_threads: int | None = Field(None, ge=1)
    num_of_cpus: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _maxima(self) -> ResourceLimits:
        for key in ("user_space_size", "user_space_max_size"):
            size = getattr(self, key)
            # it becomes each process's RLIMIT_AS: past what a process can address, the limit
            # means nothing, and past 2**63 the host refuses it when the first program starts
            if size is not None and size > USER_ADDRESS_SPACE:
                raise FieldProblem(
                    "is more than a process can address on this machine "
                    f'(at most "{format_size(USER_ADDRESS_SPACE)}")',
                    subpath=key,
                )
        if self.user_space_max_size is not None and self.user_space_max_size < self.user_space_size:
            raise FieldProblem(
                f"must not be smaller than user_space_size ({format_size(self.user_space_size)})",
                subpath="user_space_max_size",
            )
        heap_max = self.kernel_space_heap_max_size
        if heap_max is not None and heap_max < self.kernel_space_heap_size:
            raise FieldProblem(
                "must not be smaller than kernel_space_heap_size "
                f"({format_size(self.kernel_space_heap_size)})",
                subpath="kernel_space_heap_max_size",
            )
        if (
            self.init_num_of_threads is not None
            and self.init_num_of_threads > self.max_num_of_threads
        ):
            raise FieldProblem(
                f"must not exceed max_num_of_threads ({self.max_num_of_threads})",
                subpath="init_num_of_threads",
            )
        return self


class Process(_Section):
    default_stack_size: Size = 4 * MB
    default_heap_size: Size = 32 * MB
    default_mmap_size: Size = 100 * MB  # obsolete in Occlum, kept for compatibility


def _env_from_legacy_list(value: object) -> object:
    # Occlum before 0.16 wrote "env": ["OCCLUM=yes"]: that is today's env.default.
    return {"default": value} if isinstance(value, list) else value


class Env(_Section):
    default: list[EnvAssignment] = Field(default_factory=lambda: ["OCCLUM=yes"])
    untrusted: list[EnvName] = Field(default_factory=list)


class HighLow(_Section):
    high: HexU64 = "0x0"
    low: HexU64 = "0x0"


class Metadata(_Section):
    product_id: int = Field(0, ge=0, le=0xFFFF)
    version_number: int = Field(0, ge=0, le=0xFFFF)
    debuggable: bool = True
    enable_kss: bool = False
    disable_log: bool = False
    family_id: HighLow = Field(default_factory=HighLow)
    ext_prod_id: HighLow = Field(default_factory=HighLow)
    pkru: int | None = Field(None, ge=0, le=2)  # older Occlum kept pkru here


class Feature(_Section):
    amx: int = Field(0, ge=0, le=2)
    pkru: int = Field(0, ge=0, le=2)
    io_uring: int = Field(0, ge=0, le=16)
    enable_edmm: bool = False
    enable_posix_shm: bool = False
    # ours: "host" (the host's network, as Occlum), "loopback" (an isolated network with
    # loopback only) or "none" (no network at all)
    network: Literal["host", "loopback", "none"] = "host"


FsType = Literal["hostfs", "ramfs", "sefs", "unionfs", "devfs", "procfs", "ext2"]


class MountOptions(_Section):
    layers: list[Mount] | None = None
    MAC: str | None = None
    integrity_only: bool | None = None
    autokey_policy: int | None = None
    cache_size: Size | None = None
    disk_size: Size | None = None
    readonly: bool = False  # ours: a read-only hostfs
    temporary: bool = False  # sefs: contents discarded at exit (Occlum's /tmp)


class Mount(_Section):
    target: AbsPath
    type: FsType
    source: HostPath | None = None
    options: MountOptions = Field(default_factory=MountOptions)

    @model_validator(mode="after")
    def _per_type(self) -> Mount:
        if self.type == "hostfs" and not self.source:
            raise FieldProblem(
                "is required for a hostfs mount (the host directory to expose)",
                subpath="source",
                show_value=False,
            )
        if self.type == "unionfs" and not self.options.layers:
            raise FieldProblem(
                "is required for a unionfs mount (a list of sefs layers)",
                subpath="options.layers",
                show_value=False,
            )
        if self.type != "unionfs" and self.options.layers is not None:
            raise FieldProblem(
                f"is only allowed for a unionfs mount, not {self.type}",
                subpath="options.layers",
                show_value=False,
            )
        return self


MountOptions.model_rebuild()


def _default_mounts() -> list[Mount]:
    return [Mount.model_validate(m) for m in DEFAULT_CONFIG["mount"]]


class OcclumConfig(_Section):
    resource_limits: ResourceLimits = Field(
        default_factory=lambda: ResourceLimits.model_validate({})
    )
    process: Process = Field(default_factory=Process)
    entry_points: list[AbsPath] = Field(default_factory=lambda: ["/bin"])
    env: Annotated[Env, BeforeValidator(_env_from_legacy_list)] = Field(default_factory=Env)
    metadata: Metadata = Field(default_factory=lambda: Metadata.model_validate({}))
    feature: Feature = Field(default_factory=lambda: Feature.model_validate({}))
    mount: list[Mount] = Field(default_factory=_default_mounts)

    @field_validator("mount")
    @classmethod
    def _mount_table(cls, mounts: list[Mount]) -> list[Mount]:
        seen: set[str] = set()
        for i, m in enumerate(mounts):
            if m.target in seen:
                raise FieldProblem(
                    f'mounts "{m.target}" a second time (each target may appear once)',
                    subpath=f"{i}.target",
                    show_value=False,
                )
            seen.add(m.target)
        if "/" not in seen:
            raise FieldProblem(
                'has no file system at "/" (add a unionfs or sefs mount with target "/")',
                show_value=False,
            )
        return mounts


# Occlum's template (etc/template/Occlum.json), with /proc, /dev and /tmp spelled out: Occlum
# mounts procfs and devfs itself, and our root is read-only until SEFS lands, so /tmp is a ramfs.
DEFAULT_CONFIG: dict[str, Any] = {
    "resource_limits": {
        "kernel_space_heap_size": "32MB",
        "kernel_space_stack_size": "1MB",
        "user_space_size": "300MB",
        "max_num_of_threads": 32,
    },
    "process": {
        "default_stack_size": "4MB",
        "default_heap_size": "32MB",
        "default_mmap_size": "100MB",
    },
    "entry_points": ["/bin"],
    "env": {"default": ["OCCLUM=yes"], "untrusted": ["EXAMPLE"]},
    "metadata": {
        "product_id": 0,
        "version_number": 0,
        "debuggable": True,
        "enable_kss": False,
        "family_id": {"high": "0x0", "low": "0x0"},
        "ext_prod_id": {"high": "0x0", "low": "0x0"},
    },
    "feature": {
        "amx": 0,
        "pkru": 0,
        "io_uring": 0,
        "enable_edmm": False,
        "enable_posix_shm": False,
    },
    "mount": [
        {
            "target": "/",
            "type": "unionfs",
            "options": {
                "layers": [
                    {
                        "target": "/",
                        "type": "sefs",
                        "source": "./build/mount/__ROOT",
                        "options": {"MAC": ""},
                    },
                    {"target": "/", "type": "sefs", "source": "./run/mount/__ROOT"},
                ]
            },
        },
        {"target": "/host", "type": "hostfs", "source": "."},
        {"target": "/proc", "type": "procfs"},
        {"target": "/dev", "type": "devfs"},
        {"target": "/tmp", "type": "ramfs"},
    ],
}


def default_config_text() -> str:
    return json.dumps(DEFAULT_CONFIG, indent=4) + "\n"


@dataclass(slots=True, frozen=True)
class LoadedConfig:
    config: OcclumConfig
    warnings: tuple[str, ...]


def parse_config(text: str, label: str = CONFIG_NAME) -> LoadedConfig:
    """Validate the text of an ``Occlum.json``; ``label`` prefixes every message."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{label}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}")
    except RecursionError:  # the decoder recurses once per bracket
        raise UserError(f"{label}: invalid JSON: arrays or objects nested too deep")
    if not isinstance(raw, dict):
        raise UserError(f"{label}: the top level must be a JSON object {{...}}")
    try:
        config = OcclumConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(describe_error(label, e))
    warnings = tuple(f"{label}: unknown key {p} (ignored)" for p in iter_unknown_keys(config))
    return LoadedConfig(config, warnings)


def load_config(path: str | os.PathLike[str], label: str | None = None) -> LoadedConfig:
    p = Path(path)
    name = label or p.name
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{name}: no such file ({p})")
    except UnicodeDecodeError:
        raise UserError(f"{name}: not UTF-8 text")
    except OSError as e:
        raise UserError(f"{name}: cannot read: {e.strerror}")
    return parse_config(text, name)


def normalized_config_text(config: OcclumConfig) -> str:
    """The validated config with every default filled in, sizes written back as strings."""
    return json.dumps(config.model_dump(mode="json", exclude_none=True), indent=4) + "\n"


# --- from configuration to a RunSpec (the rules: builtconf.py, shared with `occlum run`) ---


def _mount_dicts(config: OcclumConfig) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json", exclude_none=True) for m in config.mount]


def plan_mounts(
    config: OcclumConfig, instance_dir: str | os.PathLike[str]
) -> tuple[MountSpec, ...]:
    """The non-root mounts for the kernel; the root is the built image.

    Raises ``UserError`` for a mount our kernel cannot provide yet.
    """
    return builtconf.plan_mounts(_mount_dicts(config), instance_dir)


def check_entry_point(config: OcclumConfig, path: str) -> str:
    """The normalized program path, if it lies under an entry point; else ``UserError``."""
    return builtconf.check_entry_point(config.entry_points, path)


def build_env(config: OcclumConfig, host_env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``env.default``, then the host values of the names in ``env.untrusted`` (they win)."""
    return builtconf.build_env(config.env.default, config.env.untrusted, host_env)
