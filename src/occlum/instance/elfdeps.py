"""Which host files an ELF program needs, found the way the host's dynamic loader finds them.

Used by ``copy_bom``'s automatic dependency analysis. Unlike Occlum's copy_bom, which runs the
loader with ``--list``, we read the ELF files with pyelftools and repeat ld.so's search: the
interpreter from ``PT_INTERP``, then each ``DT_NEEDED`` name, transitively, looked up in

1. ``DT_RPATH`` of the object (and of the executable), unless the object has ``DT_RUNPATH``;
2. (``LD_LIBRARY_PATH`` is deliberately ignored: the image must not depend on the shell);
3. ``DT_RUNPATH`` of the object;
4. ``/etc/ld.so.cache`` (read through ``ldconfig -p``; failing that, the ``ld.so.conf`` dirs);
5. the default directories.

``$ORIGIN`` is the directory of the executable's real path, or of the path a library was found
under; ``$LIB`` is ``lib/x86_64-linux-gnu`` and ``$PLATFORM`` ``x86_64`` (Debian's values). A
library found through an ``$ORIGIN`` entry is reported with its place relative to the object
whose entry it was (``Dependencies.origin_relative``): copied elsewhere, the object still
finds it only there. A candidate whose ELF class or machine differs from the program's is
skipped, as ld.so does. musl programs (interpreter ``ld-musl-*``) search ``/etc/ld-musl-<arch>.path`` or
``/lib:/usr/local/lib:/usr/lib`` instead, and get ``libc.so`` from the interpreter itself.

glibc loads ``libgcc_s.so.1`` with ``dlopen`` when a thread exits or is cancelled
(``pthread_exit``, ``pthread_cancel``: the stack unwinder), so no ``DT_NEEDED`` names it; a
program that loads glibc's ``libc.so.6`` gets it too, found as libc itself would find it,
when the host has it (its absence is no error).

A ``.so`` file is often no ELF file but a GNU ld script (Debian's ``libc.so``, ``libm.so``):
``GROUP``/``INPUT`` name the files the linker reads instead, ``AS_NEEDED`` ones included.
``linker_script_inputs`` finds them, for a program such as gcc that links inside the image.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection, DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)
MUSL_DEFAULT_DIRS = ("/lib", "/usr/local/lib", "/usr/lib")
_ELF_MAGIC = b"\x7fELF"
GLIBC = "libc.so.6"
# what glibc opens at run time, for every program linked with it
GLIBC_DLOPENED = ("libgcc_s.so.1",)


@dataclass(slots=True, frozen=True)
class ElfInfo:
    elf_class: int  # 32 or 64
    machine: str  # e_machine, e.g. "EM_X86_64"
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == _ELF_MAGIC
    except OSError:
        return False


def read_elf_info(path: str) -> ElfInfo | None:
    """The loader-relevant facts of ``path``; ``None`` if it is not a (valid) ELF file."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != _ELF_MAGIC:
                return None
            f.seek(0)
            elf = ELFFile(f)
            interp = None
            dynamic: DynamicSection | DynamicSegment | None = None
            for seg in elf.iter_segments():
                if isinstance(seg, InterpSegment):
                    interp = seg.get_interp_name()
                elif seg["p_type"] == "PT_DYNAMIC" and isinstance(seg, DynamicSegment):
                    dynamic = seg
            section = elf.get_section_by_name(".dynamic")
            if isinstance(section, DynamicSection):
                dynamic = section
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            if dynamic is not None:
                for tag in dynamic.iter_tags():
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        needed.append(tag.needed)  # type: ignore[attr-defined]
                    elif kind == "DT_RPATH":
                        rpath.extend(p for p in tag.rpath.split(":") if p)  # type: ignore[attr-defined]
                    elif kind == "DT_RUNPATH":
                        runpath.extend(p for p in tag.runpath.split(":") if p)  # type: ignore[attr-defined]
            return ElfInfo(
                elf_class=elf.elfclass,
                machine=str(elf.header["e_machine"]),
                interp=interp,
                needed=tuple(needed),
                rpath=tuple(rpath),
                runpath=tuple(runpath),
            )
    except (OSError, ELFError, ValueError, KeyError, AssertionError):
        return None


@cache
def ld_so_cache() -> dict[str, tuple[str, ...]]:
    """soname -> paths of 64-bit x86 libraries in the host's ld.so cache."""
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None
    )
    entries: dict[str, list[str]] = {}
    if ldconfig is None:
        return {}
    try:
        out = subprocess.run(
            [ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    for line in out.splitlines():
        if "=>" not in line or not line.startswith(("\t", " ")):
            continue
        left, _, path = line.partition("=>")
        name, _, flags = left.strip().partition(" ")
        if "x86-64" not in flags:
            continue
        entries.setdefault(name, []).append(path.strip())
    return {k: tuple(v) for k, v in entries.items()}


@cache
def ld_so_conf_dirs(conf: str = "/etc/ld.so.conf") -> tuple[str, ...]:
    """The directories of ``ld.so.conf`` (with its ``include`` globs): the fallback cache."""
    dirs: list[str] = []
    seen: set[str] = set()

    def read(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            return
        for raw in lines:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("include"):
                pattern = line.split(None, 1)[1] if " " in line or "\t" in line else ""
                if not os.path.isabs(pattern):
                    pattern = os.path.join(os.path.dirname(path), pattern)
                for inc in sorted(glob.glob(pattern)):
                    read(inc)
            elif line.startswith("/"):
                dirs.append(line)

    read(conf)
    return tuple(dirs)


@dataclass(slots=True)
class Dependencies:
    """What ``find_dependencies`` found: host paths in load order, and what is missing."""

    paths: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (name, needed by)
    # path -> (the object whose $ORIGIN entry found it, the path relative to that $ORIGIN)
    origin_relative: dict[str, tuple[str, str]] = field(default_factory=dict)


class LibraryResolver:
    """Finds the transitive dependencies of ELF files (results cached per file)."""

    def __init__(
        self,
        *,
        cache: dict[str, tuple[str, ...]] | None = None,
        default_dirs: tuple[str, ...] = DEFAULT_DIRS,
        conf_dirs: tuple[str, ...] | None = None,
    ) -> None:
        self._cache = ld_so_cache() if cache is None else cache
        # Without a cache, the ld.so.conf directories stand in for it.
        if conf_dirs is None:
            conf_dirs = ld_so_conf_dirs() if not self._cache else ()
        self._conf_dirs = conf_dirs
        self._default_dirs = default_dirs
        self._infos: dict[str, ElfInfo | None] = {}

    def info(self, path: str) -> ElfInfo | None:
        if path not in self._infos:
            self._infos[path] = read_elf_info(path)
        return self._infos[path]

    def find_dependencies(self, program: str) -> Dependencies:
        """Interpreter and shared libraries ``program`` needs, transitively, as host paths."""
        result = Dependencies()
        main = self.info(program)
        if main is None:
            return result
        origin = os.path.dirname(os.path.realpath(program))
        musl = main.interp is not None and os.path.basename(main.interp).startswith("ld-musl")
        seen: set[str] = set()
        if main.interp is not None:
            if self._accept(main.interp, main):
                result.paths.append(main.interp)
                seen.add(os.path.realpath(main.interp))
            else:
                result.missing.append((main.interp, program))
        exe_rpath = [] if main.runpath else self._owned(main.rpath, origin, program)
        # (object, its facts, its $ORIGIN, whether what it needs may be missing)
        queue: list[tuple[str, ElfInfo, str, bool]] = [(program, main, origin, False)]
        loaded_names: set[str] = set()
        while queue:
            obj, info, obj_origin, optional = queue.pop(0)
            for name in info.needed:
                if name in loaded_names:
                    continue
                loaded_names.add(name)
                found, owner = self._search(name, obj, info, obj_origin, exe_rpath, main, musl)
                if found is None:
                    if not optional:
                        result.missing.append((name, obj))
                    continue
                real = os.path.realpath(found)
                if real in seen:
                    continue
                seen.add(real)
                result.paths.append(found)
                if owner is not None:
                    owner_origin = origin if owner == program else os.path.dirname(owner)
                    result.origin_relative[found] = (owner, os.path.relpath(found, owner_origin))
                dep_info = self.info(found)
                if dep_info is not None:
                    queue.append((found, dep_info, os.path.dirname(found), False))
                    if name == GLIBC and not musl:
                        # libc.so.6 opens these itself later: searched as if it needed them
                        libc = _with_needed(dep_info, GLIBC_DLOPENED)
                        queue.append((found, libc, os.path.dirname(found), True))
        return result

    def _search(
        self,
        name: str,
        obj: str,
        info: ElfInfo,
        origin: str,
        exe_rpath: list[tuple[str, str | None]],
        main: ElfInfo,
        musl: bool,
    ) -> tuple[str | None, str | None]:
        """Where ld.so finds ``name`` needed by ``obj``, and the object whose ``$ORIGIN``
        entry found it (None: found elsewhere)."""
        if "/" in name:
            return (name if self._accept(name, main) else None), None
        dirs: list[tuple[str, str | None]] = []
        if not info.runpath:
            dirs += self._owned(info.rpath, origin, obj)
            dirs += exe_rpath
        dirs += self._owned(info.runpath, origin, obj)
        for d, owner in dirs:
            cand = os.path.join(d, name)
            if self._accept(cand, main):
                return cand, owner
        if musl:
            for d in _musl_dirs():
                cand = os.path.join(d, name)
                if self._accept(cand, main):
                    return cand, None
            if name.startswith("libc.so") and main.interp is not None:
                return main.interp, None  # musl's loader is its libc
            return None, None
        for cand in self._cache.get(name, ()):
            if self._accept(cand, main):
                return cand, None
        for d in (*self._conf_dirs, *self._default_dirs):
            cand = os.path.join(d, name)
            if self._accept(cand, main):
                return cand, None
        return None, None

    @classmethod
    def _owned(cls, paths: tuple[str, ...], origin: str, obj: str) -> list[tuple[str, str | None]]:
        """``paths`` expanded, each with ``obj`` if it is relative to ``obj``'s ``$ORIGIN``."""
        return [
            (d, obj if p.startswith(("$ORIGIN", "${ORIGIN}")) else None)
            for p, d in zip(paths, cls._expand(paths, origin), strict=True)
        ]

    def _accept(self, path: str, main: ElfInfo) -> bool:
        if not os.path.isfile(path):
            return False
        info = self.info(path)
        return (
            info is not None and info.elf_class == main.elf_class and info.machine == main.machine
        )

    @staticmethod
    def _expand(paths: tuple[str, ...], origin: str) -> tuple[str, ...]:
        out = []
        for p in paths:
            p = p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
            p = p.replace("${LIB}", "lib/x86_64-linux-gnu").replace("$LIB", "lib/x86_64-linux-gnu")
            p = p.replace("${PLATFORM}", "x86_64").replace("$PLATFORM", "x86_64")
            out.append(os.path.normpath(p))
        return tuple(out)


_SCRIPT_MAX = 64 << 10  # Debian's scripts are a few hundred bytes
_SCRIPT_COMMENT = re.compile(rb"/\*.*?\*/", re.S)
_SCRIPT_INPUTS = re.compile(rb"\b(?:GROUP|INPUT)\s*\(")
_SCRIPT_TOKEN = re.compile(rb"[\s,()]+")


@dataclass(slots=True)
class ScriptInputs:
    """The files a linker script names: host paths found, and names not found."""

    paths: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def linker_script_inputs(
    path: str, search_dirs: tuple[str, ...] = DEFAULT_DIRS
) -> ScriptInputs | None:
    """The files the GNU ld script ``path`` names in ``GROUP`` and ``INPUT`` (those inside
    ``AS_NEEDED`` too), found as ld finds them; None if ``path`` is no such script.

    A name is an absolute path (``=`` first: below the sysroot, ``/`` here), ``-lNAME``
    (``libNAME.so``, then ``libNAME.a``), or a file name, looked up in the script's directory,
    then in ``search_dirs``."""
    try:
        with open(path, "rb") as f:
            data = f.read(_SCRIPT_MAX + 1)
    except OSError:
        return None
    if len(data) > _SCRIPT_MAX or data.startswith(_ELF_MAGIC) or b"\0" in data:
        return None  # too big, ELF, or binary (an archive)
    text = _SCRIPT_COMMENT.sub(b" ", data)
    names: list[str] = []
    commands = 0
    for m in _SCRIPT_INPUTS.finditer(text):
        commands += 1
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {b"(": 1, b")": -1}.get(text[i : i + 1], 0)
            i += 1
        for tok in _SCRIPT_TOKEN.split(text[m.end() : i]):
            tok = tok.strip(b'"')
            if tok and tok != b"AS_NEEDED":
                names.append(tok.decode(errors="surrogateescape"))
    if not commands:
        return None
    result = ScriptInputs()
    dirs = (os.path.dirname(path), *search_dirs)
    for name in names:
        found = _script_input(name, dirs)
        if found is None:
            result.missing.append(name)
        elif found not in result.paths:
            result.paths.append(found)
    return result


def _script_input(name: str, dirs: tuple[str, ...]) -> str | None:
    if name.startswith("="):
        name = "/" + name[1:].lstrip("/")
    if name.startswith("/"):
        return name if os.path.isfile(name) else None
    if name.startswith("-l:"):
        candidates = [name[3:]]
    elif name.startswith("-l"):
        candidates = [f"lib{name[2:]}.so", f"lib{name[2:]}.a"]
    else:
        candidates = [name]
    for d in dirs:
        for c in candidates:
            cand = os.path.join(d, c)
            if os.path.isfile(cand):
                return cand
    return None


def _with_needed(info: ElfInfo, needed: tuple[str, ...]) -> ElfInfo:
    """``info`` needing only ``needed`` (searched with its own paths)."""
    return ElfInfo(info.elf_class, info.machine, info.interp, needed, info.rpath, info.runpath)


@cache
def _musl_dirs() -> tuple[str, ...]:
    for conf in ("/etc/ld-musl-x86_64.path",):
        try:
            with open(conf) as f:
                text = f.read()
        except OSError:
            continue
        return tuple(p for p in text.replace("\n", ":").split(":") if p)
    return MUSL_DEFAULT_DIRS
