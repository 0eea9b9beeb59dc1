"""``occlum run``'s translation of a built instance into the ``RunSpec`` the kernel boots: the
built configuration, the verified measurement, the SEFS keys and the mounts."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from occlum.errors import UserError
from occlum.instance.config import (
    OcclumConfig,
    build_env,
    check_entry_point,
    log_level_from_env,
    plan_mounts,
)
from occlum.instance.layout import Instance
from occlum.kernel.spec import EnclaveSpec, MountSpec, RunSpec


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
        enclave=_enclave_spec(inst),
    )


def _enclave_spec(inst: Instance) -> EnclaveSpec:
    """The identity ``/dev/sgx`` reports: the signed (and just verified) SIGSTRUCT's."""
    from occlum.enclave.build_seal import read_sigstruct
    from occlum.enclave.keys import platform_key_path

    sig = read_sigstruct(inst.build_dir)
    return EnclaveSpec(
        mrenclave=sig.mrenclave,
        mrsigner=sig.mrsigner,
        isv_prod_id=sig.isv_prod_id,
        isv_svn=sig.isv_svn,
        debuggable=sig.debuggable,
        platform_key_path=str(platform_key_path()),
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


def _with_sefs_key(inst: Instance, config: OcclumConfig, m: MountSpec) -> MountSpec:
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


def _verified_root(inst: Instance) -> tuple[str, str, dict[str, str]]:
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
