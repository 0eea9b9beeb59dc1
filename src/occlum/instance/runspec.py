"""``occlum run``'s translation of a built instance into the ``RunSpec`` the kernel boots: the
built configuration, the verified measurement, the SEFS keys and the mounts.

The built configuration is read as :mod:`occlum.instance.builtconf` reads it (validated by
``occlum build``, its bytes measured), so a run imports no schema library."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from occlum.errors import UserError
from occlum.instance.builtconf import (
    CONFIG_NAME,
    BuiltConfig,
    build_env,
    check_entry_point,
    log_level_from_env,
    plan_mounts,
)
from occlum.instance.layout import Instance
from occlum.kernel.spec import EnclaveSpec, MountSpec, RunSpec

if TYPE_CHECKING:  # imported where used: a run that fails early loads no signature code
    from occlum.enclave.sigstruct import Sigstruct


@dataclass(slots=True, frozen=True)
class Volume:
    """A persistent SEFS volume of a built instance and the key a run derives for it."""

    target: str  # "/" for the root's writable layer
    storage: Path
    key: bytes
    mac_only: bool


def volumes(inst: Instance) -> list[Volume]:
    """The persistent SEFS volumes of the built instance, keyed as ``occlum run`` keys them:
    sealed to this enclave under the platform key (``occlum fsck``, ``occlum mount``)."""
    spec = to_run_spec(inst, (), os.environ, service=True)
    out = []
    if spec.root_upper is not None and spec.root_upper_key is not None:
        out.append(Volume("/", Path(spec.root_upper), spec.root_upper_key, False))
    for m in spec.mounts:
        if m.fs_type == "sefs" and not m.temporary and m.source is not None and m.key is not None:
            out.append(Volume(m.target, Path(m.source), m.key, m.mac_only))
    return out


def to_run_spec(
    instance: Instance | str | Path,
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
    inst = instance if isinstance(instance, Instance) else Instance(Path(instance))
    if not argv and not service:
        raise UserError("no program given (e.g. occlum run /bin/hello)")
    inst.require_run_files()
    if not inst.built_image_dir.is_dir():
        raise UserError(
            f"{inst.built_image_dir} is missing: the build is incomplete, run `occlum build`"
        )
    try:
        config_bytes = inst.built_config_path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {e.filename}: {e.strerror}: run `occlum build`")
    config = BuiltConfig.from_bytes(config_bytes, f"build/{CONFIG_NAME}.built")
    # a started instance (service) runs the programs `occlum exec` names, checked then
    program = check_entry_point(config.entry_points, argv[0]) if argv else ""
    # the SIGSTRUCT is read and its signature checked once: the one that matched the
    # measurement is the one /dev/sgx reports and the sealing keys derive from
    root_image, root_hash, hashes, sig = _verified_root(inst, config_bytes)
    init_image = inst.build_dir / "initfs.img"
    init_hash = hashes.get("initfs")
    user_key = None
    if image_key is not None:
        from occlum.enclave.keys import format_image_key, load_image_key

        user_key = format_image_key(load_image_key(image_key)).encode()
    mounts = plan_mounts(config.mounts, inst.path)
    for m in mounts:
        if m.fs_type == "hostfs" and m.source is not None and not os.path.isdir(m.source):
            raise UserError(f"mount {m.target}: host directory {m.source} does not exist")
    policies = {m.target: config.mount_options(m.target).get("autokey_policy") for m in mounts}
    mounts = tuple(_with_sefs_key(sig, policies.get(m.target), m) for m in mounts)
    upper = config.root_upper_layer(inst.path)
    root_upper = root_upper_key = None
    if upper is not None:
        root_upper = upper[0]
        root_upper_key = _with_sefs_key(sig, upper[1], MountSpec("/", "sefs", root_upper)).key
    extra = {
        "config": str(inst.built_config_path),
        "kernel_space_heap_size": str(config.kernel_space_heap_size),
        "default_mmap_size": str(config.default_mmap_size),
    }
    if config.user_space_max_size is not None:
        extra["user_space_max_size"] = str(config.user_space_max_size)
    return RunSpec(
        instance_dir=str(inst.path),
        root_dir=str(inst.built_image_dir),
        argv=(program, *argv[1:]) if argv else (),
        env=build_env(config.env_default, config.env_untrusted, host_env),
        mounts=mounts,
        max_threads=config.max_threads,
        user_space_size=config.user_space_size,
        default_stack_size=config.default_stack_size,
        default_heap_size=config.default_heap_size,
        log_level=log_level or log_level_from_env(host_env),
        network=config.network,
        extra=extra,
        root_image=root_image,
        root_hash=root_hash,
        root_upper=root_upper,
        root_upper_key=root_upper_key,
        # measured, so never skipped: require_run_files has checked that the image is there
        init_image=str(init_image) if init_hash is not None else None,
        init_hash=init_hash,
        user_image_key=user_key,
        enclave=_enclave_spec(sig),
    )


def _enclave_spec(sig: Sigstruct) -> EnclaveSpec:
    """The identity ``/dev/sgx`` reports: the signed (and just verified) SIGSTRUCT's."""
    from occlum.enclave.keys import platform_key_path

    return EnclaveSpec(
        mrenclave=sig.mrenclave,
        mrsigner=sig.mrsigner,
        isv_prod_id=sig.isv_prod_id,
        isv_svn=sig.isv_svn,
        debuggable=sig.debuggable,
        platform_key_path=str(platform_key_path()),
    )


def _with_sefs_key(sig: Sigstruct, policy: int | None, m: MountSpec) -> MountSpec:
    """A SEFS mount gets its volume key: a fresh random one for a temporary volume, else the
    sealing key of this enclave under the simulated platform key, one per mount target:
    ``autokey_policy`` 0 seals to this very build (MRENCLAVE); otherwise to the signer
    (MRSIGNER), so that rebuilds signed by the same key keep their data."""
    if m.fs_type != "sefs":
        return m
    if m.temporary:
        return dataclasses.replace(m, key=os.urandom(32))
    from occlum.enclave.keys import load_platform_key, platform_key_path, sealing_key

    key_path = platform_key_path()
    if m.source is not None and not key_path.exists() and (Path(m.source) / "superblock").exists():
        # a new platform key would be created and could never open the existing volume
        raise UserError(
            f"mount {m.target}: the volume in {m.source} is sealed with the platform key "
            f"{key_path}, which is missing (restore it, or remove the volume to start empty)"
        )
    key = sealing_key(
        load_platform_key(),
        "MRENCLAVE" if policy == 0 else "MRSIGNER",
        sig.mrenclave,
        sig.mrsigner,
        b"sefs:" + m.target.encode(),
        isv_prod_id=sig.isv_prod_id,
    )
    return dataclasses.replace(m, key=key)


def _verified_root(
    inst: Instance, config_bytes: bytes
) -> tuple[str, str, dict[str, str], Sigstruct]:
    """The root image and its hash, after checking that the build's measurement still holds:
    the LibOS, the built configuration and the image hashes give the MRENCLAVE that was
    signed at ``occlum build`` (a tampered hash file or configuration stops here; a tampered
    image stops when it is mounted); and the SIGSTRUCT that was checked."""
    from occlum.enclave.build_seal import verify_build

    try:
        hashes = json.loads(inst.image_hashes_path.read_text())
    except OSError as e:
        raise UserError(f"cannot read {e.filename}: {e.strerror}: run `occlum build`")
    except (ValueError, RecursionError):  # RecursionError: brackets nested too deep
        raise UserError(f"{inst.image_hashes_path}: malformed; run `occlum build`")
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise UserError(f"{inst.image_hashes_path}: malformed; run `occlum build`")
    sig = verify_build(inst.build_dir, config_bytes, hashes)
    if "image" not in hashes or not inst.root_image_path.is_file():
        raise UserError(f"{inst.root_image_path} is missing: run `occlum build`")
    return str(inst.root_image_path), hashes["image"], hashes, sig
