"""``occlum package``: a built instance as one archive that runs on another machine, or as an
OCI image.

The package holds what ``occlum run`` reads and nothing else, under one top-level directory
named after the instance::

    NAME/Occlum.json                 the configuration, unchanged since the build
    NAME/.__occlum_status            "built"
    NAME/build/Occlum.json.built     the measured configuration that ``occlum run`` uses
    NAME/build/image_hashes.json     the images' root hashes and the image type (measured)
    NAME/build/sigstruct.json        MRENCLAVE, the signer's public key and the signature
    NAME/build/image.img             the root image (encrypted if built with --image-key)
    NAME/build/initfs.img            the init stage's image
    NAME/build/image/                empty: ``occlum run`` takes its presence as "built"

and, for each hostfs mount whose host directory lies inside the instance, that directory,
empty. What stays behind, and why:

- ``image/``, ``initfs/``, the staged ``build/image/`` tree and the ``*.leaves`` caches are the
  build's inputs and intermediates; the images carry their contents. The staged tree is the
  plaintext even of an encrypted build.
- ``build/dev_signing_key.pem`` is a private key: whoever holds it can sign enclaves with this
  instance's MRSIGNER and so open everything sealed to it. The SIGSTRUCT carries the public
  half, which is all ``occlum run`` checks.
- ``run/`` is run-time state: pid files and the SEFS volumes of earlier runs (the root's
  writable layer ``run/mount/__ROOT`` and the other volumes). Those are sealed with keys derived
  from this machine's platform key, and their rollback counters live beside that key, so they
  could not be opened on another platform anyway, as on SGX, where sealing keys come from the
  CPU. On the target the writable layers start empty and are sealed to its own platform key.

The archive is deterministic: entries sorted, owner 0:0 without names, normalized modes, one
mtime for every entry (``$SOURCE_DATE_EPOCH``, else the time of the build), and a gzip header
without a name or time. The same build packaged twice gives the same bytes. It is written to a
temporary file beside the destination and renamed into place only when complete.

An OCI image layout (``--oci DIR``) holds one image whose top layer is the same tree under
``/occlum_instance``. Below it goes the runtime layer (:mod:`.runtime`: a Python and the
LibOS), and the image's entrypoint is ``occlum-container`` (:mod:`occlum.cli.container`) with
the program as its command: the image runs on a host that has only a container engine. With
``--no-runtime`` or ``--base`` the instance's layer goes alone or on a base image that provides
``occlum`` on ``PATH`` (``--base`` takes that image's layers and settings from another OCI
layout), and the configuration runs ``occlum --instance-dir /occlum_instance run``.

About 650 lines, one room: the archive and the OCI image are two writers of one package
layout and its checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from occlum.errors import UserError
from occlum.instance.blobs import HashingWriter, reproducible_gzip
from occlum.instance.config import (
    CONFIG_NAME,
    LoadedConfig,
    check_entry_point,
    normalized_config_text,
    plan_mounts,
)
from occlum.instance.layout import RUN_BUILD_FILES, STATUS_FILE, BuildProgress, Instance

OCI_INSTANCE_DIR = "/occlum_instance"
OCI_LAYOUT_VERSION = "1.0.0"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# the tag grammar of the OCI image layout's ref.name as registries accept it
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_COPY_CHUNK = 1 << 20


@dataclass(slots=True, frozen=True)
class Member:
    """One entry of the package: ``name`` relative to the top directory ('' for the top
    directory itself), copied from ``source`` (None: a directory)."""

    name: str
    source: Path | None
    mode: int
    size: int = 0


@dataclass(slots=True)
class PackageReport:
    path: Path
    files: int = 0
    bytes: int = 0
    mrenclave: str = ""
    debuggable: bool = False
    warnings: list[str] = field(default_factory=list)
    # --oci only
    tag: str = ""
    manifest_digest: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    runtime: bool = False  # the image carries the runtime layer


@dataclass(slots=True, frozen=True)
class _Checked:
    config: LoadedConfig
    mrenclave: str
    mrsigner: str
    debuggable: bool
    mtime: int


# --- what may be packaged -------------------------------------------------------------------


def _check_packable(inst: Instance, *, debug: bool) -> _Checked:
    """The instance is built, its Occlum.json is the one it was built from, the build still
    measures to its signed MRENCLAVE, and it is not debuggable unless ``debug``."""
    from occlum.enclave.build_seal import SIGSTRUCT_NAME, read_sigstruct, verify_build

    inst.require()
    build = inst.build_dir
    if not inst.is_built() and not any((build / name).exists() for name in RUN_BUILD_FILES):
        raise UserError("instance not built: run `occlum build` before `occlum package`")
    inst.require_run_files()  # a piece missing is named
    built_text = inst.built_config_path.read_text()
    if normalized_config_text(inst.load_config().config) != built_text:
        raise UserError(
            f"{CONFIG_NAME} changed since `occlum build`: run `occlum build` before "
            "`occlum package`"
        )
    try:
        hashes = json.loads(inst.image_hashes_path.read_text())
    except (OSError, ValueError, RecursionError):
        raise UserError(f"{inst.image_hashes_path} is damaged: run `occlum build`")
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise UserError(f"{inst.image_hashes_path} is damaged: run `occlum build`")
    verify_build(build, built_text.encode(), hashes)
    sig = read_sigstruct(build)
    if sig.debuggable and not debug:
        raise UserError(
            "the enclave is debuggable (metadata.debuggable is true in Occlum.json, the "
            "default): set it to false and run `occlum build`, or package a debuggable "
            "enclave anyway with `occlum package --debug`"
        )
    loaded = inst.load_built_config()
    return _Checked(
        config=loaded,
        mrenclave=sig.mrenclave.hex(),
        mrsigner=sig.mrsigner.hex(),
        debuggable=sig.debuggable,
        mtime=_package_mtime(build / SIGSTRUCT_NAME),
    )


def _package_mtime(sigstruct: Path) -> int:
    """``$SOURCE_DATE_EPOCH`` (the reproducible-builds convention), else the build's time."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if env:
        if not env.isdigit():
            raise UserError(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds")
        return int(env)
    return int(sigstruct.stat().st_mtime)


def _members(inst: Instance, checked: _Checked, warnings: list[str]) -> list[Member]:
    out = [
        Member("", None, 0o755),
        Member("build", None, 0o755),
        Member("build/image", None, 0o755),
        _file_member(inst.path, CONFIG_NAME),
    ]
    if inst.status_path.is_file():
        out.append(_file_member(inst.path, STATUS_FILE))
    out += [_file_member(inst.path, f"build/{name}") for name in RUN_BUILD_FILES]
    dirs = {m.name for m in out if m.source is None}
    base = inst.path.resolve()
    for m in plan_mounts(checked.config.config, inst.path):
        if m.fs_type != "hostfs" or m.source is None:
            continue
        source = Path(m.source)
        if source == base:
            continue
        if not source.is_relative_to(base):
            warnings.append(
                f"mount {m.target}: the host directory {source} is outside the instance and "
                "not packaged; it must exist on the machine that runs the package"
            )
            continue
        parts = source.relative_to(base).parts
        for i in range(1, len(parts) + 1):  # the directory and its parents, empty
            name = "/".join(parts[:i])
            if name not in dirs:
                dirs.add(name)
                out.append(Member(name, None, 0o755))
    hashes = json.loads(inst.image_hashes_path.read_text())
    if hashes.get("image_type") == "encrypted":
        from occlum.instance.layout import BUILDIN_IMAGE_KEY_PATH

        warnings.append(
            "the root image is encrypted: unless the key was built in (--buildin-image-key, "
            f"{BUILDIN_IMAGE_KEY_PATH} in the initfs), `occlum run --image-key FILE` on the "
            "target needs the key file"
        )
    return sorted(out, key=lambda m: m.name)


def _file_member(base: Path, name: str) -> Member:
    try:
        st = os.stat(base / name)
    except OSError as e:
        raise UserError(f"cannot read {base / name}: {e.strerror}")
    mode = 0o755 if st.st_mode & 0o111 else 0o644
    return Member(name, base / name, mode, st.st_size)


# --- writing a tar stream -------------------------------------------------------------------


class _ProgressReader:
    def __init__(self, f: IO[bytes], progress: BuildProgress | None) -> None:
        self.f = f
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if self.progress is not None:
            self.progress.advance(len(data))
        return data


def _write_tar(
    out: Any, top: str, members: list[Member], mtime: int, progress: BuildProgress | None
) -> None:
    """``members`` as a tar stream on ``out``, below the directory ``top``."""
    with tarfile.TarFile(
        fileobj=out, mode="w", format=tarfile.GNU_FORMAT, copybufsize=_COPY_CHUNK
    ) as tar:
        for m in members:
            info = tarfile.TarInfo(f"{top}/{m.name}" if m.name else top)
            info.mtime = mtime
            info.mode = m.mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if m.source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            info.type = tarfile.REGTYPE
            info.size = m.size
            try:
                f = open(m.source, "rb")  # noqa: SIM115 - closed below, its errors name the file
            except OSError as e:
                raise UserError(f"cannot read {m.source}: {e.strerror}")
            with f:
                try:
                    tar.addfile(info, _ProgressReader(f, progress))  # type: ignore[arg-type]
                except OSError as e:
                    if e.errno is None:  # tarfile's "unexpected end of data": it shrank
                        raise UserError(f"{m.source} changed while it was being packaged")
                    raise


def _start(progress: BuildProgress | None, members: list[Member]) -> None:
    if progress is not None:
        files = [m for m in members if m.source is not None]
        progress.start(sum(m.size for m in files), len(files))


# --- occlum package [NAME.tar.gz] -----------------------------------------------------------


def default_package_name(inst: Instance) -> str:
    return inst.path.name + ".tar.gz"


def write_package(
    inst: Instance,
    out: Path | None = None,
    *,
    debug: bool = False,
    progress: BuildProgress | None = None,
) -> PackageReport:
    """``occlum package [OUT]``: the archive at ``out`` (default ``<instance name>.tar.gz`` in
    the current directory; an existing directory gets that name inside it; as in Occlum, a
    name not ending in ``.tar.gz`` gets that suffix)."""
    checked = _check_packable(inst, debug=debug)
    dest = Path(out) if out is not None else Path(default_package_name(inst))
    if dest.is_dir():
        dest = dest / default_package_name(inst)
    elif not dest.name.endswith(".tar.gz"):
        dest = dest.with_name(dest.name + ".tar.gz")
    dest = Path(os.path.abspath(dest))
    report = PackageReport(dest, mrenclave=checked.mrenclave, debuggable=checked.debuggable)
    members = _members(inst, checked, report.warnings)
    _start(progress, members)
    with _atomic_file(dest) as raw:
        gz = reproducible_gzip(raw)
        with gz:
            _write_tar(gz, inst.path.name, members, checked.mtime, progress)
    report.files = sum(1 for m in members if m.source is not None)
    report.bytes = sum(m.size for m in members)
    return report


@contextlib.contextmanager
def _atomic_file(dest: Path) -> Iterator[IO[bytes]]:
    """A file that appears at ``dest`` whole when the block succeeds, and not at all if it
    fails (the temporary file beside it is removed)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as e:
        raise UserError(f"cannot write {dest}: {_why(e, dest.parent)}")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, dest)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UserError(f"cannot write {dest}: {e.strerror}")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _why(e: OSError, parent: Path) -> str:
    if isinstance(e, FileNotFoundError):
        return f"the directory {parent} does not exist"
    if isinstance(e, NotADirectoryError):
        return f"{parent} is not a directory"
    return e.strerror or str(e)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- occlum package --oci DIR ---------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class _Base:
    """The base image's layers (descriptors, blobs copied as they are) and configuration."""

    layout: Path
    layers: list[dict[str, Any]]
    config: dict[str, Any]


def write_oci_layout(
    inst: Instance,
    out_dir: Path,
    *,
    tag: str = "latest",
    cmd: str | None = None,
    base: str | None = None,
    runtime: bool = True,
    debug: bool = False,
    progress: BuildProgress | None = None,
) -> PackageReport:
    """``occlum package --oci DIR``: an OCI image layout at ``out_dir`` (new, or an empty
    directory) holding the image ``tag``; ``cmd`` (a shell-quoted command line) is its Cmd,
    by default the first entry point that is a program; ``base`` (``LAYOUT[:TAG]``) an OCI
    layout whose image goes under the instance's layer; without it, and unless ``runtime``
    is false, the runtime layer (:mod:`.runtime`: a Python and the LibOS) does."""
    if not _TAG_RE.fullmatch(tag):
        raise UserError(
            f"--tag {tag!r}: a tag is letters, digits, '_', '.' and '-' (not first), "
            "at most 128 characters"
        )
    checked = _check_packable(inst, debug=debug)
    dest = Path(os.path.abspath(out_dir))
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"--oci {dest}: exists and is not an empty directory (choose a new one)")
    argv = _oci_cmd(inst, checked, cmd)
    base_image = _read_base(base) if base is not None else None
    report = PackageReport(
        dest, mrenclave=checked.mrenclave, debuggable=checked.debuggable, tag=tag, cmd=argv
    )
    members = _members(inst, checked, report.warnings)
    if base_image is None and runtime:
        # run/ (the server's socket, pid files, the SEFS volumes) writable by whichever user
        # the container runs as: the least privilege is a user that is not root (deploy.md)
        members = sorted([*members, Member("run", None, 0o1777)], key=lambda m: m.name)
    _start(progress, members)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as e:
        raise UserError(f"cannot create {dest}: {_why(e, dest.parent)}")
    try:
        blobs = tmp / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layers: list[dict[str, Any]] = []
        diff_ids: list[str] = []
        history: list[dict[str, Any]] = []
        image_config: dict[str, Any] = {}
        entrypoint = ["occlum", "--instance-dir", OCI_INSTANCE_DIR, "run"]
        if base_image is None and runtime:
            from occlum.instance import runtime as rt

            rt_layer = rt.build_runtime_layer()
            _copy_cached_blob(rt_layer.blob, blobs / rt_layer.digest.removeprefix("sha256:"))
            layers.append(
                {"mediaType": MEDIA_LAYER_GZIP, "digest": rt_layer.digest, "size": rt_layer.size}
            )
            diff_ids.append(rt_layer.diff_id)
            history.append({
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rt.runtime_mtime())),
                "created_by": "occlum package --oci",
                "comment": f"the runtime: Python {sys.version.split()[0]} and the LibOS",
            })  # fmt: skip
            image_config["Env"] = rt.environment()
            entrypoint = [rt.CONTAINER_BIN]
            report.runtime = True
        if base_image is not None:
            for desc in base_image.layers:
                _copy_blob(base_image.layout, desc, blobs)
                layers.append(desc)
            diff_ids = list(base_image.config.get("rootfs", {}).get("diff_ids", []))
            history = list(base_image.config.get("history", []))
            image_config = dict(base_image.config.get("config") or {})
        layer, diff_id = _write_layer(blobs, members, checked.mtime, progress)
        layers.append(layer)
        diff_ids.append(diff_id)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(checked.mtime))
        image_config["Entrypoint"] = entrypoint
        if argv:
            image_config["Cmd"] = argv
        else:
            image_config.pop("Cmd", None)
        image_config["WorkingDir"] = OCI_INSTANCE_DIR
        image_config.setdefault("Env", [DEFAULT_PATH_ENV])
        labels = dict(image_config.get("Labels") or {})
        labels.update({
            "occlum.mrenclave": checked.mrenclave,
            "occlum.mrsigner": checked.mrsigner,
            "occlum.debuggable": "true" if checked.debuggable else "false",
        })  # fmt: skip
        image_config["Labels"] = labels
        history.append({
            "created": created,
            "created_by": "occlum package --oci",
            "comment": f"the Occlum instance {inst.path.name} at {OCI_INSTANCE_DIR}",
        })  # fmt: skip
        config_doc = {
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        config_desc = _write_json_blob(blobs, config_doc, MEDIA_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_desc,
            "layers": layers,
        }
        manifest_desc = _write_json_blob(blobs, manifest, MEDIA_MANIFEST)
        manifest_desc["annotations"] = {REF_NAME: tag}
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc]}
        (tmp / "index.json").write_bytes(_json_bytes(index))
        (tmp / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
        os.chmod(tmp, 0o777 & ~_umask())
        os.rename(tmp, dest)  # replaces an empty directory
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write {dest}: {e.strerror}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.files = sum(1 for m in members if m.source is not None)
    report.bytes = sum(m.size for m in members)
    report.manifest_digest = manifest_desc["digest"]
    report.entrypoint = entrypoint
    return report


def _copy_cached_blob(src: Path, dst: Path) -> None:
    """A blob of the cache in the layout: a copy (a hard link would let a change to one
    layout corrupt the cache, and with it every later image)."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


def _oci_cmd(inst: Instance, checked: _Checked, cmd: str | None) -> list[str]:
    """The image's Cmd: ``cmd`` split as a shell would, its program checked against the entry
    points; by default the first entry point that is a program rather than a directory."""
    config = checked.config.config
    if cmd is not None:
        try:
            argv = shlex.split(cmd)
        except ValueError as e:
            raise UserError(f"--cmd {cmd!r}: {e}")
        if not argv:
            raise UserError("--cmd is empty: give the program and its arguments")
        return [check_entry_point(config, argv[0]), *argv[1:]]
    for ep in config.entry_points:
        try:
            st = os.lstat(inst.built_image_dir / ep.lstrip("/"))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return [ep]
    return []


def _write_layer(
    blobs: Path, members: list[Member], mtime: int, progress: BuildProgress | None
) -> tuple[dict[str, Any], str]:
    """The instance as a gzip'd tar layer blob: its descriptor and its diff_id (the digest
    of the uncompressed tar)."""
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".layer.")
    with os.fdopen(fd, "wb") as raw:
        compressed = HashingWriter(raw)
        gz = reproducible_gzip(compressed)
        with gz:
            uncompressed = HashingWriter(gz)
            _write_tar(uncompressed, OCI_INSTANCE_DIR.strip("/"), members, mtime, progress)
    os.chmod(tmp, 0o644)
    os.rename(tmp, blobs / compressed.sha256.hexdigest())
    desc = {"mediaType": MEDIA_LAYER_GZIP, "digest": compressed.digest, "size": compressed.size}
    return desc, uncompressed.digest


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _write_json_blob(blobs: Path, doc: Any, media_type: str) -> dict[str, Any]:
    data = _json_bytes(doc)
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


# --- --base LAYOUT[:TAG] --------------------------------------------------------------------


def _read_base(spec: str) -> _Base:
    """The image ``TAG`` (default: the layout's only image) of the OCI layout ``LAYOUT``; a
    multi-platform index is resolved to its linux/amd64 image."""
    path, sep, tag = spec.rpartition(":")
    if not sep or "/" in tag:
        path, tag = spec, ""
    layout = Path(path)
    what = f"--base {spec}"
    if not (layout / "oci-layout").is_file():
        raise UserError(f"{what}: {layout} is not an OCI image layout (no oci-layout file)")
    index = _read_json(layout / "index.json", what)
    manifests = [m for m in index.get("manifests", []) if isinstance(m, dict)]
    if tag:
        found = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME) == tag]
        if not found:
            tags = sorted(
                str((m.get("annotations") or {}).get(REF_NAME)) for m in manifests
                if (m.get("annotations") or {}).get(REF_NAME)
            )  # fmt: skip
            raise UserError(f"{what}: no image tagged {tag!r} (tags: {', '.join(tags) or 'none'})")
        desc = found[0]
    elif len(manifests) == 1:
        desc = manifests[0]
    else:
        raise UserError(f"{what}: the layout holds {len(manifests)} images: name one as {path}:TAG")
    doc = _read_blob_json(layout, desc, what)
    if desc.get("mediaType") == MEDIA_INDEX or "manifests" in doc:
        for m in doc.get("manifests", []):
            platform = m.get("platform") or {}
            if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
                doc = _read_blob_json(layout, m, what)
                break
        else:
            raise UserError(f"{what}: the image has no linux/amd64 variant")
    if doc.get("mediaType", MEDIA_MANIFEST) != MEDIA_MANIFEST or "config" not in doc:
        raise UserError(f"{what}: not an OCI image manifest ({doc.get('mediaType')})")
    config = _read_blob_json(layout, doc["config"], what)
    arch, os_name = config.get("architecture"), config.get("os")
    if (arch, os_name) != ("amd64", "linux"):
        raise UserError(f"{what}: the image is for {os_name}/{arch}, not linux/amd64")
    layers = [dict(d) for d in doc.get("layers", [])]
    return _Base(layout, layers, config)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except OSError as e:
        raise UserError(f"{what}: cannot read {path}: {e.strerror}")
    except (ValueError, RecursionError):  # RecursionError: brackets nested too deep
        raise UserError(f"{what}: {path} is not valid JSON")
    if not isinstance(doc, dict):
        raise UserError(f"{what}: {path} is not a JSON object")
    return doc


def _blob_path(layout: Path, desc: dict[str, Any], what: str) -> Path:
    digest = str(desc.get("digest", ""))
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise UserError(f"{what}: unsupported or malformed digest {digest!r}")
    return layout / "blobs" / "sha256" / hexdigest


def _read_blob_json(layout: Path, desc: dict[str, Any], what: str) -> dict[str, Any]:
    path = _blob_path(layout, desc, what)
    doc = _read_json(path, what)
    if "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() != desc.get("digest"):
        raise UserError(f"{what}: {path} does not match its digest")
    return doc


def _copy_blob(layout: Path, desc: dict[str, Any], blobs: Path) -> None:
    """Copy one of the base's blobs, checking its digest and size on the way."""
    src = _blob_path(layout, desc, f"--base {layout}")
    h = hashlib.sha256()
    dst = blobs / src.name
    try:
        with open(src, "rb") as fi, open(dst, "wb") as fo:
            while chunk := fi.read(_COPY_CHUNK):
                h.update(chunk)
                fo.write(chunk)
            size = fo.tell()
    except FileNotFoundError:
        raise UserError(f"--base {layout}: the blob {src.name} is missing")
    if h.hexdigest() != src.name or size != desc.get("size"):
        raise UserError(f"--base {layout}: the blob {src.name} does not match its digest or size")


# --- occlum package --k8s FILE ----------------------------------------------------------------


def k8s_name(inst: Instance) -> str:
    """The instance directory's name as a Kubernetes object name (RFC 1123 label)."""
    name = re.sub(r"[^a-z0-9-]+", "-", inst.path.name.lower()).strip("-")[:50].strip("-")
    return name or "occlum"


def write_k8s_manifest(
    inst: Instance,
    out: Path,
    *,
    image: str | None = None,
    tag: str = "latest",
    cmd: str | None = None,
    port: int | None = None,
    platform_dir: str = "/var/lib/occlum/platform",
    replicas: int = 1,
    debug: bool = False,
) -> PackageReport:
    """``occlum package --k8s FILE``: ``replicas`` Deployments running the image ``image`` (default ``localhost/<name>:<tag>``) of this instance; ``cmd`` becomes the
    container's ``args`` (else the image's Cmd runs); ``port`` is served and probed."""
    from occlum.instance.deploy import k8s_manifest

    checked = _check_packable(inst, debug=debug)
    args = _oci_cmd(inst, checked, cmd) if cmd is not None else []
    name = k8s_name(inst)
    ref = image or f"localhost/{name}:{tag}"
    if port is not None and not 0 < port < 65536:
        raise UserError(f"--port {port}: not a TCP port (1 to 65535)")
    if not 1 <= replicas <= 100:
        raise UserError(f"--replicas {replicas}: from 1 to 100")
    if port is not None and port + replicas - 1 > 65535:
        raise UserError(
            f"--port {port}: the replicas' ports {port}..{port + replicas - 1} pass 65535"
        )
    if not platform_dir.startswith("/"):
        raise UserError(f"--platform-dir {platform_dir}: must be an absolute path on the node")
    text = k8s_manifest(
        name=name, image=ref, config=checked.config.config, args=args, port=port,
        platform_dir=platform_dir, mrenclave=checked.mrenclave, replicas=replicas,
    )  # fmt: skip
    dest = Path(os.path.abspath(out))
    with _atomic_file(dest) as f:
        f.write(text.encode())
    report = PackageReport(dest, mrenclave=checked.mrenclave, debuggable=checked.debuggable)
    report.tag = ref
    report.cmd = args
    return report
