"""The instance directory: ``occlum new``/``init``, ``occlum build`` and ``occlum status``.

An instance directory looks like Occlum's::

    Occlum.json              the configuration the user edits
    .__occlum_status         "initialized" or "built" (Occlum's own marker file)
    image/                   the root file system as the user prepares it (cp, copy_bom)
    initfs/                  the init stage's file system: bin/init (the default init, or
                             the user's own) and whatever it needs
    build/image/             the staged root (plaintext, even for an encrypted build)
    build/image.img          the root image that ``occlum run`` mounts (encrypted with
                             ``--image-key``), build/initfs.img the init stage's
    build/image_hashes.json  the images' root hashes and ``image_type`` (measured)
    build/Occlum.json.built  the validated configuration, every default filled in
    run/pids/<pid>           one file per running ``occlum run``

``occlum build`` copies ``image/`` into a fresh temporary directory next to ``build/image`` and
renames it into place only when everything was copied, so a failed build leaves the previous
build usable. Files whose size, mtime and mode did not change since the previous build are hard
linked from it instead of copied.

About 630 lines, one room: new, init, build and status read and write the same directory
layout.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from occlum.errors import UserError
from occlum.instance.builtconf import CONFIG_NAME
from occlum.instance.initprog import install_default_init

if TYPE_CHECKING:
    from occlum.instance.config import LoadedConfig

STATUS_FILE = ".__occlum_status"
# build/image_hashes.json: besides each image's root hash, what the root image is
IMAGE_TYPE_KEY = "image_type"
IMAGE_TYPE_ENCRYPTED = "encrypted"
IMAGE_TYPE_INTEGRITY_ONLY = "integrity-only"
# where --buildin-image-key puts the key in the initfs image (Occlum's path)
BUILDIN_IMAGE_KEY_PATH = "/etc/image_key"
# where --init-ra puts the broker's URL and the secret's name in the initfs image
INIT_RA_CONF_PATH = "/etc/init_ra.conf"
# the secret that --init-ra URL asks for unless the URL names one (URL#NAME)
INIT_RA_DEFAULT_SECRET = "image_key"
IMAGE_DIRS = ("bin", "lib", "lib64", "etc", "tmp", "proc", "dev", "host", "root", "sbin")
INITFS_DIRS = ("bin", "lib", "dev", "proc", "etc")
# build/ outputs that `occlum run` reads: each is measured into MRENCLAVE or is its signature
RUN_BUILD_FILES = (
    CONFIG_NAME + ".built",
    "image_hashes.json",
    "sigstruct.json",
    "image.img",
    "initfs.img",
)


@dataclass(slots=True, frozen=True)
class Instance:
    """An Occlum instance directory (which need not exist yet)."""

    path: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Instance:
        return cls(Path(os.path.abspath(path)))

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def image_dir(self) -> Path:
        return self.path / "image"

    @property
    def initfs_dir(self) -> Path:
        return self.path / "initfs"

    @property
    def build_dir(self) -> Path:
        return self.path / "build"

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    @property
    def built_image_dir(self) -> Path:
        return self.build_dir / "image"

    @property
    def root_image_path(self) -> Path:
        return self.build_dir / "image.img"

    @property
    def image_hashes_path(self) -> Path:
        return self.build_dir / "image_hashes.json"

    @property
    def built_config_path(self) -> Path:
        return self.build_dir / (CONFIG_NAME + ".built")

    @property
    def pids_dir(self) -> Path:
        return self.run_dir / "pids"

    def is_instance(self) -> bool:
        return self.config_path.is_file() or self.status_path.is_file()

    def require(self) -> None:
        if not self.config_path.is_file():
            raise UserError(
                f"not an Occlum instance directory: {self.path} (no {CONFIG_NAME}; "
                "create one with `occlum new DIR` or `occlum init`)"
            )

    def load_config(self) -> LoadedConfig:
        from occlum.instance.config import load_config  # pydantic: not on `occlum run`'s path

        self.require()
        return load_config(self.config_path)

    def is_built(self) -> bool:
        return self.built_config_path.is_file() and self.built_image_dir.is_dir()

    def require_run_files(self) -> None:
        """Refuse to run a build with a piece missing, naming it. The measurement covers every
        one of them, so none may be skipped: without this, a run would go on without what a
        missing file holds (a missing initfs.img was once a boot without its init stage)."""
        self.require()
        present = [n for n in RUN_BUILD_FILES if os.path.lexists(self.build_dir / n)]
        if not present:
            raise UserError("instance not built: run `occlum build` first")
        for name in RUN_BUILD_FILES:
            path = self.build_dir / name
            if not path.is_file():
                what = "not a regular file" if os.path.lexists(path) else "missing"
                raise UserError(f"{path} is {what}: the build is incomplete, run `occlum build`")

    def load_built_config(self) -> LoadedConfig:
        self.require()
        if not self.is_built():
            if self.built_config_path.is_file():  # the rest of build/ is there
                raise UserError(
                    f"{self.built_image_dir} is missing: the build is incomplete, run "
                    "`occlum build`"
                )
            raise UserError("instance not built: run `occlum build` first")
        from occlum.instance.config import load_config

        return load_config(self.built_config_path, label=f"build/{CONFIG_NAME}.built")

    def running_pids(self) -> list[int]:
        """Pids of live ``occlum run`` processes of this instance (stale pid files are removed)."""
        pids: list[int] = []
        try:
            names = os.listdir(self.pids_dir)
        except OSError:
            return pids
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if pid_alive(pid):
                pids.append(pid)
            else:
                with contextlib.suppress(OSError):
                    (self.pids_dir / name).unlink()
        return sorted(pids)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Mark this process as running the instance for the duration of the block."""
        pid_file: Path | None = self.pids_dir / str(os.getpid())
        try:
            self.pids_dir.mkdir(parents=True, exist_ok=True)
            (self.pids_dir / str(os.getpid())).write_text(f"{os.getpid()}\n")
        except OSError:
            pid_file = None  # a read-only instance still runs, it just does not show as running
        try:
            yield
        finally:
            if pid_file is not None:
                with contextlib.suppress(OSError):
                    pid_file.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process of this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- new / init -----------------------------------------------------------------------------


def new_instance(path: str | os.PathLike[str]) -> Instance:
    """``occlum new DIR``: DIR must not exist."""
    inst = Instance.at(path)
    if os.path.lexists(inst.path):
        raise UserError(f"destination {inst.path} already exists")
    try:
        inst.path.mkdir(parents=True)
    except OSError as e:
        raise UserError(f"cannot create {inst.path}: {e.strerror}")
    _populate(inst)
    return inst


def init_instance(path: str | os.PathLike[str]) -> Instance:
    """``occlum init``: make an existing directory an instance."""
    inst = Instance.at(path)
    if not inst.path.is_dir():
        raise UserError(f"{inst.path} is not a directory")
    if inst.is_instance():
        raise UserError(f"{inst.path} is already an Occlum instance")
    _populate(inst)
    return inst


def _populate(inst: Instance) -> None:
    from occlum.instance.config import default_config_text

    try:
        for d in IMAGE_DIRS:
            (inst.image_dir / d).mkdir(parents=True, exist_ok=True)
        for d in INITFS_DIRS:
            (inst.initfs_dir / d).mkdir(parents=True, exist_ok=True)
        inst.build_dir.mkdir(exist_ok=True)
        inst.run_dir.mkdir(exist_ok=True)
        hosts = inst.image_dir / "etc" / "hosts"
        if not hosts.exists():
            hosts.write_text("127.0.0.1   localhost\n::1         localhost\n")
        # root's entries, as every base image has them: getpwuid(0), ~ and whoami work, and
        # tar, shutil and initgroups find the names of uid and gid 0 (a program's own users
        # are added by whoever builds the image, e.g. copying the host's files with copy_bom)
        for name, text in (
            ("passwd", "root:x:0:0:root:/root:/bin/sh\n"
                       "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
            ("group", "root:x:0:\nnogroup:x:65534:\n"),
        ):  # fmt: skip
            target = inst.image_dir / "etc" / name
            if not os.path.lexists(target):
                target.write_text(text)
        resolv = Path("/etc/resolv.conf")
        target = inst.image_dir / "etc" / "resolv.conf"
        if resolv.exists() and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                shutil.copyfile(resolv, target)  # the host's resolvers, for getaddrinfo
        localtime = Path("/etc/localtime")
        target = inst.image_dir / "etc" / "localtime"
        if localtime.exists() and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                shutil.copyfile(localtime, target)  # follows the host's symlink, as cp does
        install_default_init(inst.initfs_dir)
        inst.config_path.write_text(default_config_text())
        inst.status_path.write_text("initialized\n")
    except OSError as e:
        raise UserError(f"cannot create the instance in {inst.path}: {e.strerror}: {e.filename}")


# --- build ----------------------------------------------------------------------------------


class BuildProgress(Protocol):
    def start(self, total_bytes: int, total_files: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...


@dataclass(slots=True)
class BuildReport:
    files_copied: int = 0
    files_reused: int = 0
    bytes_copied: int = 0
    symlinks: int = 0
    dirs: int = 0
    warnings: list[str] = field(default_factory=list)
    mrenclave: str = ""
    image_type: str = IMAGE_TYPE_INTEGRITY_ONLY


def build_instance(
    inst: Instance,
    *,
    force: bool = False,
    progress: BuildProgress | None = None,
    sign_key: Path | None = None,
    image_key: Path | None = None,
    buildin_image_key: bool = False,
    init_ra: str | None = None,
) -> BuildReport:
    """``occlum build``: validate the config, stage ``image/`` into ``build/image/``, turn it
    and ``initfs/`` into images, and measure and sign the result.

    The staged tree gets an ``/etc/ld.so.cache`` of its own; the images are what the LibOS
    mounts (``build/image.img`` as the root), and their root hashes, the built configuration
    and the LibOS itself make MRENCLAVE (``build/sigstruct.json``).

    With ``image_key`` (a key file of ``occlum gen-image-key``) the root image is encrypted;
    the initfs image stays integrity-only, and with ``buildin_image_key`` it holds the key, in
    the key file's format, at ``/etc/image_key`` (``initfs/`` itself is not changed).
    ``build/image_hashes.json`` records ``"image_type"``: ``"encrypted"`` or
    ``"integrity-only"``; it is measured with the root hashes.

    With ``init_ra`` (``http://IPV4:PORT[#SECRET]``, the attested boot) the initfs image gets
    the attested-boot init as ``/bin/init`` and the broker's URL and the secret's name at
    ``/etc/init_ra.conf``, so MRENCLAVE covers both; the key is never written anywhere in the
    instance, and the broker must hold it (``occlum kbs add-secret``).
    """
    from occlum.instance.config import normalized_config_text, plan_mounts

    if buildin_image_key and image_key is None:
        raise UserError("--buildin-image-key needs --image-key FILE: there is no key to build in")
    ra_conf = None if init_ra is None else _init_ra_conf(init_ra, image_key, buildin_image_key)
    key: bytes | None = None
    if image_key is not None:  # before anything in build/ changes: a bad key file is harmless
        from occlum.enclave.keys import load_image_key

        key = load_image_key(Path(image_key))
    loaded = inst.load_config()
    plan_mounts(loaded.config, inst.path)  # rejects mounts the kernel cannot provide yet
    report = BuildReport(warnings=list(loaded.warnings))
    if not inst.image_dir.is_dir():
        raise UserError(f"{inst.image_dir} is missing: the instance has no image to build")
    try:
        inst.build_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {inst.build_dir}: {e.strerror}")
    _remove_leftovers(inst.build_dir)

    entries = _scan_image(inst.image_dir)
    if progress is not None:
        progress.start(
            sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode)), len(entries)
        )
    old = inst.built_image_dir if inst.built_image_dir.is_dir() and not force else None
    tmp = inst.build_dir / f".image.tmp-{os.getpid()}"
    try:
        _copy_tree(inst.image_dir, tmp, entries, old, report, progress)
        _make_loader_cache(tmp, report)
        _swap_into_place(tmp, inst.built_image_dir)
        config_text = normalized_config_text(loaded.config)
        _ensure_init(inst, report)
        hashes = _build_images(inst, force, key, buildin_image_key, ra_conf)
        key_pem = _read_sign_key(sign_key)
        metadata = loaded.config.metadata.model_dump()
        _write_atomically(inst.built_config_path, config_text)
        _write_atomically(
            inst.image_hashes_path, json.dumps(hashes, indent=2, sort_keys=True) + "\n"
        )
        from occlum.enclave.build_seal import seal_build

        sig = seal_build(
            inst.build_dir, config_text.encode(), hashes, metadata, key_pem,
            sign_key_source=str(sign_key) if sign_key else "the signing key",
        )  # fmt: skip
        report.mrenclave = sig.mrenclave.hex()
        report.image_type = hashes[IMAGE_TYPE_KEY]
        inst.status_path.write_text("built\n")
    finally:
        if tmp.exists():
            _rmtree(tmp)
    return report


def _init_ra_conf(init_ra: str, image_key: Path | None, buildin_image_key: bool) -> bytes:
    """The text of ``/etc/init_ra.conf`` for ``--init-ra URL[#SECRET]``: the URL, then the
    secret's name, one a line (what the attested-boot init reads)."""
    import re

    if image_key is None:
        raise UserError("--init-ra needs --image-key FILE: the attested boot fetches the key "
                        "of an encrypted image")  # fmt: skip
    if buildin_image_key:
        raise UserError("--init-ra and --buildin-image-key exclude each other: with --init-ra "
                        "the key stays with the key broker")  # fmt: skip
    url, _, secret = init_ra.partition("#")
    secret = secret or INIT_RA_DEFAULT_SECRET
    m = re.fullmatch(r"http://(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})/?", url)
    if m is None or not 0 < int(m.group(2)) < 65536:
        raise UserError(f"--init-ra {init_ra}: the broker's URL is http://IPV4:PORT[#SECRET]")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,127}", secret):
        raise UserError(f"--init-ra {init_ra}: the secret's name is [A-Za-z0-9._-]+")
    return f"http://{m.group(1)}:{m.group(2)}\n{secret}\n".encode()


def _build_images(
    inst: Instance, force: bool, key: bytes | None, buildin_key: bool, ra_conf: bytes | None
) -> dict[str, str]:
    """The images of the staged root (encrypted with ``key``) and of ``initfs/`` (integrity-
    only, holding the key if ``buildin_key``, or the attested-boot init and its ``ra_conf``):
    name -> root hash, plus the image type.

    Incremental builds work for both kinds (see ``LeafCache``); a cache made for another key
    or without one is not used.
    """
    from occlum.instance.image_builder import LeafCache, build_image

    add: dict[str, bytes] = {}
    if key is not None and buildin_key:
        from occlum.enclave.keys import format_image_key

        add[BUILDIN_IMAGE_KEY_PATH] = format_image_key(key).encode()
    executables: list[str] = []
    if ra_conf is not None:  # in place of initfs/bin/init, which stays as it is
        from occlum.instance.initprog import init_ra_program

        add["/bin/init"] = init_ra_program().read_bytes()
        add[INIT_RA_CONF_PATH] = ra_conf
        executables.append("/bin/init")
    hashes: dict[str, str] = {}
    for name, tree in (("image", inst.built_image_dir), ("initfs", inst.initfs_dir)):
        leaves_path = inst.build_dir / f"{name}.leaves"
        cache = LeafCache() if force else LeafCache.load(leaves_path)
        out = inst.build_dir / f"{name}.img"
        if name == "image":
            hashes[name] = build_image(tree, out, cache=cache, key=key)
        elif tree.is_dir():
            hashes[name] = build_image(
                tree, out, cache=cache, add_files=add, executables=executables
            )
        else:  # an instance without initfs/ gets an empty one
            with tempfile.TemporaryDirectory() as empty:
                for d in {os.path.dirname(p) for p in add if os.path.dirname(p) != "/"}:
                    os.makedirs(empty + d)
                    os.chmod(empty + d, 0o755)  # not the umask's choice: same image every time
                    os.utime(empty + d, ns=(0, 0))
                os.chmod(empty, 0o755)
                os.utime(empty, ns=(0, 0))  # the same empty image every time
                hashes[name] = build_image(
                    Path(empty), out, cache=cache, add_files=add, executables=executables
                )
        try:
            cache.save(leaves_path)
        except UserError:
            pass  # only the next build's speed depends on it
    hashes[IMAGE_TYPE_KEY] = IMAGE_TYPE_ENCRYPTED if key is not None else IMAGE_TYPE_INTEGRITY_ONLY
    return hashes


def _ensure_init(inst: Instance, report: BuildReport) -> None:
    """The boot runs initfs/bin/init: an instance without one gets the default init back."""
    init = inst.initfs_dir / "bin" / "init"
    if os.path.lexists(init):
        return
    try:
        for d in INITFS_DIRS:
            (inst.initfs_dir / d).mkdir(parents=True, exist_ok=True)
        install_default_init(inst.initfs_dir)
    except OSError as e:
        raise UserError(f"cannot put the default init at {init}: {e.strerror}")
    report.warnings.append(f"{init} was missing: the default init was put there")


def _read_sign_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"--sign-key {path}: {e.strerror}")


def _make_loader_cache(root: Path, report: BuildReport) -> None:
    """Give the built root an ``/etc/ld.so.cache`` listing its own libraries, unless image/
    brings one: without it the dynamic loader probes every directory of its search path for
    each library, and in the LibOS each probe is a served call."""
    cache = root / "etc" / "ld.so.cache"
    if cache.exists() or cache.is_symlink() or os.geteuid() != 0:
        return
    ldconfig = shutil.which("ldconfig") or (
        "/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None
    )
    if ldconfig is None or not (root / "etc").is_dir():
        return
    etc = os.stat(root / "etc")
    try:
        subprocess.run([ldconfig, "-r", str(root)], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        report.warnings.append(f"no /etc/ld.so.cache in the image (ldconfig failed: {exc})")
    else:
        # keep the measurement a function of image/ alone: no build-time timestamps
        os.utime(cache, ns=(etc.st_mtime_ns, etc.st_mtime_ns))
        for aux in (root / "var" / "cache" / "ldconfig" / "aux-cache",):
            with contextlib.suppress(OSError):
                aux.unlink()
    os.utime(root / "etc", ns=(etc.st_atime_ns, etc.st_mtime_ns))


def _remove_leftovers(build_dir: Path) -> None:
    for p in build_dir.iterdir():
        if p.name.startswith((".image.tmp-", ".image.old-")):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                raise UserError(f"another `occlum build` (pid {pid}) is running in this instance")
            _rmtree(p)


def _rmtree(path: Path) -> None:
    # a directory copied with mode 0555 cannot be emptied until it is writable again
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                with contextlib.suppress(OSError):
                    os.chmod(p, 0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _scan_image(image: Path) -> list[tuple[str, os.stat_result]]:
    """Every entry below ``image`` as (relative path, lstat), parents before children."""
    out: list[tuple[str, os.stat_result]] = []

    def walk(rel: str) -> None:
        full = os.path.join(image, rel) if rel else str(image)
        try:
            names = sorted(os.listdir(full))
        except OSError as e:
            raise UserError(f"cannot read directory image/{rel}: {e.strerror}")
        for name in names:
            r = os.path.join(rel, name) if rel else name
            st = os.lstat(os.path.join(image, r))
            out.append((r, st))
            if stat.S_ISDIR(st.st_mode):
                walk(r)

    walk("")
    return out


def _copy_tree(
    src: Path,
    dst: Path,
    entries: list[tuple[str, os.stat_result]],
    old: Path | None,
    report: BuildReport,
    progress: BuildProgress | None,
) -> None:
    dst.mkdir(mode=0o755)
    dirs: list[tuple[Path, os.stat_result]] = [(dst, os.stat(src))]
    for rel, st in entries:
        s, d = src / rel, dst / rel
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            d.mkdir(mode=0o700)
            dirs.append((d, st))
            report.dirs += 1
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
            # the image records times: same tree, same image, same measurement
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            report.symlinks += 1
        elif stat.S_ISREG(mode):
            if old is not None and _reuse(old / rel, d, st):
                report.files_reused += 1
            else:
                _copy_file(s, d, st, f"image/{rel}")
                report.files_copied += 1
                report.bytes_copied += st.st_size
            if progress is not None:
                progress.advance(st.st_size)
        else:
            kind = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a fifo or socket"
            raise UserError(
                f"image/{rel} is {kind}: only files, directories and symlinks can go in the image "
                "(devices come from devfs)"
            )
    for d, st in reversed(dirs):  # children first: a 0555 parent would block them
        os.chmod(d, stat.S_IMODE(st.st_mode))
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))


def _reuse(old_file: Path, d: Path, st: os.stat_result) -> bool:
    try:
        ost = os.lstat(old_file)
    except OSError:
        return False
    same = (
        stat.S_ISREG(ost.st_mode)
        and ost.st_size == st.st_size
        and ost.st_mtime_ns == st.st_mtime_ns
        and ost.st_mode == st.st_mode
    )
    if not same:
        return False
    try:
        os.link(old_file, d)
    except OSError:
        return False
    return True


def _copy_file(s: Path, d: Path, st: os.stat_result, name: str) -> None:
    try:
        fsrc = open(s, "rb")  # noqa: SIM115 - closed below, its errors name the file
    except PermissionError:
        raise UserError(f"{name} is not readable: cannot put it in the image (fix its permissions)")
    except OSError as e:
        raise UserError(f"cannot read {name}: {e.strerror}")
    with fsrc, open(d, "wb") as fdst:
        try:
            shutil.copyfileobj(fsrc, fdst, 1 << 20)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise UserError(f"no space left on the device while copying {name}")
            raise UserError(f"cannot copy {name}: {e.strerror}")
    os.chmod(d, stat.S_IMODE(st.st_mode))
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap_into_place(tmp: Path, final: Path) -> None:
    old = final.with_name(f".image.old-{os.getpid()}")
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    if old.exists():
        _rmtree(old)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- status ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Status:
    instance_dir: str
    config_ok: bool
    config_problem: str
    built: bool
    built_at: float | None
    config_changed_since_build: bool
    running_pids: list[int]


def instance_status(inst: Instance) -> Status:
    from occlum.instance.config import normalized_config_text

    inst.require()
    problem = ""
    changed = False
    try:
        current = normalized_config_text(inst.load_config().config)
    except UserError as e:
        problem, current = str(e), ""
    built = inst.is_built()
    built_at = None
    if built:
        built_at = inst.built_config_path.stat().st_mtime
        try:
            changed = not problem and current != inst.built_config_path.read_text()
        except OSError:
            changed = True
    return Status(
        instance_dir=str(inst.path),
        config_ok=not problem,
        config_problem=problem,
        built=built,
        built_at=built_at,
        config_changed_since_build=changed,
        running_pids=inst.running_pids(),
    )


def format_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
