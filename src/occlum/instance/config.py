"""``Occlum.json``: loading, validation, the default template and the translation to a ``RunSpec``.

The schema follows Occlum's (``resource_limits``, ``process``, ``entry_points``, ``env``,
``metadata``, ``feature``, ``mount``) so that an Occlum user's file loads unchanged. Every section
is optional here and defaults to the value of Occlum's template. Keys we do not know are
reported as warnings, one line each, never as errors: Occlum grows keys over releases and a
newer file must still load. Every error is one line naming the JSON path, the value and what
is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
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

from occlum.abi.errors import UserError
from occlum.instance._validation import (
    FieldProblem,
    describe_error,
    format_size,
    iter_unknown_keys,
    parse_size,
)
from occlum.kernel.spec import MountSpec, RunSpec

CONFIG_NAME = "Occlum.json"
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


# --- from configuration to a RunSpec ------------------------------------------------------

LOG_LEVELS = ("off", "error", "warn", "info", "debug", "trace")
_SUPPORTED_MOUNTS = ("hostfs", "sefs", "ramfs", "devfs", "procfs")
# Occlum mounts these itself in the application stage (gen_internal_conf adds them).
_IMPLICIT_MOUNTS = (MountSpec("/proc", "procfs"), MountSpec("/dev", "devfs"))


def plan_mounts(
    config: OcclumConfig, instance_dir: str | os.PathLike[str]
) -> tuple[MountSpec, ...]:
    """The non-root mounts for the kernel; the root is the built image.

    Raises ``UserError`` for a mount our kernel cannot provide yet.
    """
    base = Path(instance_dir).resolve()
    specs: list[MountSpec] = []
    for m in config.mount:
        if m.target == "/":
            if m.type not in ("sefs", "unionfs"):
                raise UserError(
                    f'mount type {m.type} at "/" is not supported (the root must be unionfs or sefs)'
                )
            continue
        if m.type not in _SUPPORTED_MOUNTS:
            raise UserError(f"mount type {m.type} at {m.target} is not supported yet")
        source = None
        if m.type == "hostfs":
            assert m.source is not None  # checked by Mount._per_type
            source = str((base / os.path.expandvars(m.source)).resolve())
        elif m.type == "sefs":
            default = "./run/mount/" + (m.target.strip("/").replace("/", "_") or "__ROOT")
            source = str((base / os.path.expandvars(m.source or default)).resolve())
        specs.append(
            MountSpec(
                m.target, m.type, source, m.options.readonly,
                temporary=m.options.temporary,
                mac_only=bool(m.options.integrity_only) or m.options.MAC is not None,
            )
        )  # fmt: skip
    targets = {s.target for s in specs}
    implicit = [s for s in _IMPLICIT_MOUNTS if s.target not in targets]
    return (*implicit, *specs)


def check_entry_point(config: OcclumConfig, path: str) -> str:
    """The normalized program path, if it lies under an entry point; else ``UserError``."""
    if not path.startswith("/"):
        raise UserError(f"program path must be absolute inside the LibOS: {path} (e.g. /{path})")
    norm = posixpath.normpath(path).replace("//", "/")
    for ep in config.entry_points:
        if ep == "/" or norm == ep or norm.startswith(ep.rstrip("/") + "/"):
            return norm
    eps = ", ".join(config.entry_points) or "none configured"
    raise UserError(
        f"{path} is not under any entry point ({eps}); see entry_points in {CONFIG_NAME}"
    )


def build_env(config: OcclumConfig, host_env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``env.default``, then the host values of the names in ``env.untrusted`` (they win)."""
    env: dict[str, str] = {}
    for item in config.env.default:
        name, _, value = item.partition("=")
        env[name] = value
    for name in config.env.untrusted:
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


def to_run_spec(
    instance: Any,
    argv: Sequence[str],
    host_env: Mapping[str, str],
    *,
    log_level: str | None = None,
    image_key: Path | None = None,
    service: bool = False,
) -> RunSpec:
    """The ``RunSpec`` for ``occlum run argv...`` in a *built* instance.

    ``instance`` is an ``occlum.instance.layout.Instance`` (or a path to one); the configuration
    used is the built one (``build/Occlum.json.built``), as in Occlum, where editing
    ``Occlum.json`` has no effect until the next ``occlum build``.
    """
    from occlum.instance.layout import Instance

    inst = instance if isinstance(instance, Instance) else Instance(Path(instance))
    if not argv and not service:
        raise UserError("no program given (e.g. occlum run /bin/hello)")
    inst.require_run_files()
    loaded = inst.load_built_config()
    config = loaded.config
    # a started instance (service) runs the programs `occlum exec` names, checked then
    program = check_entry_point(config, argv[0]) if argv else ""
    root_image, root_hash, hashes = _verified_root(inst)
    init_image = inst.build_dir / "initfs.img"
    init_hash = hashes.get("initfs")
    user_key = None
    if image_key is not None:
        from occlum.enclave.keys import format_image_key, load_image_key

        user_key = format_image_key(load_image_key(image_key)).encode()
    mounts = plan_mounts(config, inst.path)
    for m in mounts:
        if m.fs_type == "hostfs" and m.source is not None and not os.path.isdir(m.source):
            raise UserError(f"mount {m.target}: host directory {m.source} does not exist")
    mounts = tuple(_with_sefs_key(inst, config, m) for m in mounts)
    root_upper = _root_upper_layer(config, inst.path)
    root_upper_key = None
    if root_upper is not None:
        root_upper_key = _with_sefs_key(inst, config, MountSpec("/", "sefs", root_upper)).key
    rl = config.resource_limits
    extra = {
        "config": str(inst.built_config_path),
        "kernel_space_heap_size": str(rl.kernel_space_heap_size),
        "default_mmap_size": str(config.process.default_mmap_size),
    }
    if rl.user_space_max_size is not None:
        extra["user_space_max_size"] = str(rl.user_space_max_size)
    return RunSpec(
        instance_dir=str(inst.path),
        root_dir=str(inst.built_image_dir),
        argv=(program, *argv[1:]) if argv else (),
        env=build_env(config, host_env),
        mounts=mounts,
        max_threads=rl.max_num_of_threads,
        user_space_size=rl.user_space_size,
        default_stack_size=config.process.default_stack_size,
        default_heap_size=config.process.default_heap_size,
        log_level=log_level or log_level_from_env(host_env),
        network=config.feature.network,
        extra=extra,
        root_image=root_image,
        root_hash=root_hash,
        root_upper=root_upper,
        root_upper_key=root_upper_key,
        # measured, so never skipped: require_run_files has checked that the image is there
        init_image=str(init_image) if init_hash is not None else None,
        init_hash=init_hash,
        user_image_key=user_key,
    )


def _root_upper_layer(config: OcclumConfig, instance_dir: Path) -> str | None:
    """The storage of the root's writable layer: the unionfs layer that is not the image (the
    one without ``MAC``), Occlum's ``./run/mount/__ROOT``; None if the root has no such layer."""
    root = next((m for m in config.mount if m.target == "/"), None)
    if root is None or root.type != "unionfs" or not root.options.layers:
        return None
    writable = [layer for layer in root.options.layers if layer.options.MAC is None]
    if not writable:
        return None
    source = writable[-1].source or "./run/mount/__ROOT"
    return str((Path(instance_dir) / os.path.expandvars(source)).resolve())


def _with_sefs_key(inst: Any, config: OcclumConfig, m: MountSpec) -> MountSpec:
    """A SEFS mount gets its volume key: a fresh random one for a temporary volume, else the
    sealing key of this enclave under the simulated platform key, one per mount target:
    ``autokey_policy`` 0 seals to this very build (MRENCLAVE); otherwise to the signer
    (MRSIGNER), so that rebuilds signed by the same key keep their data."""
    if m.fs_type != "sefs":
        return m
    if m.temporary:
        return dataclasses.replace(m, key=os.urandom(32))
    from occlum.enclave.build_seal import read_sigstruct
    from occlum.enclave.keys import load_platform_key, platform_key_path, sealing_key

    key_path = platform_key_path()
    if m.source is not None and not key_path.exists() and (Path(m.source) / "superblock").exists():
        # a new platform key would be created and could never open the existing volume
        raise UserError(
            f"mount {m.target}: the volume in {m.source} is sealed with the platform key "
            f"{key_path}, which is missing (restore it, or remove the volume to start empty)"
        )
    sig = read_sigstruct(inst.build_dir)
    policy = next((o.options.autokey_policy for o in config.mount if o.target == m.target), None)
    if m.target == "/":  # the root's writable layer carries its own options
        root = next((o for o in config.mount if o.target == "/"), None)
        layers = (root.options.layers or []) if root is not None else []
        policy = next((la.options.autokey_policy for la in layers if la.options.MAC is None), None)
    key = sealing_key(
        load_platform_key(),
        "MRENCLAVE" if policy == 0 else "MRSIGNER",
        sig.mrenclave,
        sig.mrsigner,
        b"sefs:" + m.target.encode(),
        isv_prod_id=sig.isv_prod_id,
    )
    return dataclasses.replace(m, key=key)


def _verified_root(inst: Any) -> tuple[str, str, dict[str, str]]:
    """The root image and its hash, after checking that the build's measurement still holds:
    the LibOS, the built configuration and the image hashes give the MRENCLAVE that was
    signed at ``occlum build`` (a tampered hash file or configuration stops here; a tampered
    image stops when it is mounted)."""
    from occlum.enclave.build_seal import verify_build

    try:
        hashes = json.loads(inst.image_hashes_path.read_text())
        config_bytes = inst.built_config_path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {e.filename}: {e.strerror}: run `occlum build`")
    except (ValueError, RecursionError):  # RecursionError: brackets nested too deep
        raise UserError(f"{inst.image_hashes_path}: malformed; run `occlum build`")
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise UserError(f"{inst.image_hashes_path}: malformed; run `occlum build`")
    verify_build(inst.build_dir, config_bytes, hashes)
    if "image" not in hashes or not inst.root_image_path.is_file():
        raise UserError(f"{inst.root_image_path} is missing: run `occlum build`")
    return str(inst.root_image_path), hashes["image"], hashes
