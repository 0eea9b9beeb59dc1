"""``copy_bom``: fill an image directory from Occlum's BOM (bill of materials) YAML files.

A BOM file has ``includes`` (other BOM files), ``excludes`` (name patterns skipped when copying
directories) and ``targets``; each target is a directory in the image with ``mkdirs``,
``createlinks`` and ``copy`` entries (``from``, ``dirs``, ``files``). Semantics follow Occlum's
copy_bom (tools/copy_bom):

- ``from``, and ``dirs``/``files`` without ``from``, are relative to the parent of ``--root``
  (Occlum's "workspace"; for ``--root image`` that is the current directory). ``$VAR`` and
  ``${VAR}`` are expanded in every path.
- a ``dirs`` entry ending in ``/`` copies the directory's contents, otherwise the directory
  itself; a copy entry with neither ``dirs`` nor ``files`` copies all of ``from``.
- files are copied dereferenced (like ``rsync -aL``), keeping mode and mtime; in copied
  directories a symlink pointing inside the copied tree stays a symlink, one pointing outside
  is replaced by what it points to (``rsync --copy-unsafe-links``).
- unchanged files (same size and mtime) are not copied again; nothing is ever deleted.
- ``hash`` is the SHA-256 of the source file (hex, any case); a mismatch is an error.
- ``autodep`` (default true): the ELF dependencies of each file (interpreter and shared
  libraries, transitively) are copied to their host paths in the image, symlinks kept as
  symlinks along with what they point to; a library found through a ``$ORIGIN`` run path goes
  where that path leads from the object's place in the image. A ``.so`` that is a linker script
  brings the files it names. A dependency that cannot be found is an error for a listed file
  and a warning for a file inside a copied directory.

Differences from Occlum: included BOM files are processed before the file including them (so
the including file has the final word on a destination), and an include cycle is an error.

About 640 lines, one room: copy_bom's YAML semantics and its copy rules follow Occlum's tool
as one unit.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from occlum.errors import UserError
from occlum.instance._validation import FieldProblem, describe_error, iter_unknown_keys
from occlum.instance.elfdeps import LibraryResolver, is_elf, linker_script_inputs

# --- the BOM file -----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


class BomLink(_Model):
    src: str
    linkname: str


class BomFile(_Model):
    name: str
    hash: str | None = None
    autodep: bool = True
    rename: str | None = None


def _file_entry(value: object) -> object:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise FieldProblem("is not a file (use a path, or {name: ..., hash: ..., rename: ...})")
    return value


class BomSource(_Model):
    from_: str | None = Field(None, alias="from")
    dirs: list[str] | None = None
    files: list[Annotated[BomFile, BeforeValidator(_file_entry)]] | None = None


class BomTarget(_Model):
    target: str
    mkdirs: list[str] | None = None
    createlinks: list[BomLink] | None = None
    copy_: list[BomSource] | None = Field(None, alias="copy")


class Bom(_Model):
    includes: list[str] | None = None
    excludes: list[str] | None = None
    targets: list[BomTarget] | None = None


@dataclass(slots=True, frozen=True)
class LoadedBom:
    path: Path
    bom: Bom
    warnings: tuple[str, ...]


MAX_BOM_VALUES = 1_000_000


def _fits(doc: object, budget: int) -> bool:
    """Whether ``doc`` holds at most ``budget`` values, counting a shared one each time."""
    stack = [doc]
    while stack:
        budget -= 1
        if budget < 0:
            return False
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


def load_bom(path: Path) -> LoadedBom:
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{label}: no such BOM file")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{label}: cannot read: {getattr(e, 'strerror', None) or e}")
    try:
        raw = yaml.safe_load(text)
    except RecursionError:  # the parser recurses once per nested collection
        raise UserError(f"{label}: invalid YAML: collections nested too deep")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{label}: {where}invalid YAML: {problem}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{label}: the top level must be a mapping (includes, excludes, targets)")
    if not _fits(raw, MAX_BOM_VALUES):
        # YAML aliases share a value: ten nested ones expand to billions (a "billion laughs")
        raise UserError(f"{label}: more than {MAX_BOM_VALUES} values once aliases are expanded")
    try:
        bom = Bom.model_validate(raw)
    except ValidationError as e:
        raise UserError(describe_error(label, e))
    warnings = tuple(f"{label}: unknown key {k} (ignored)" for k in iter_unknown_keys(bom))
    return LoadedBom(path, bom, warnings)


def resolve_includes(top: Path, include_dirs: tuple[str, ...]) -> list[LoadedBom]:
    """The BOM files to process: every include before its includer, each file once."""
    order: list[LoadedBom] = []
    done: set[Path] = set()

    def visit(path: Path, stack: tuple[Path, ...]) -> None:
        real = path.resolve()
        if real in stack:
            cycle = " -> ".join(str(p) for p in (*stack[stack.index(real) :], real))
            raise UserError(f"include cycle: {cycle}")
        if real in done:
            return
        loaded = load_bom(path)
        for i, name in enumerate(loaded.bom.includes or ()):
            found = _find_include(_expand(name, f"{path}: includes[{i}]"), path, include_dirs)
            if found is None:
                dirs = ", ".join([str(path.parent), *include_dirs])
                raise UserError(f"{path}: includes[{i}]: cannot find {name} (searched {dirs})")
            visit(found, (*stack, real))
        done.add(real)
        order.append(loaded)

    visit(top, ())
    return order


def _find_include(name: str, includer: Path, include_dirs: tuple[str, ...]) -> Path | None:
    # Occlum looks next to the including file first, then in each --include-dir.
    for d in (str(includer.parent), *include_dirs):
        cand = Path(d) / name
        if cand.is_file():
            return cand
    return None


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(path: str, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        value = os.environ.get(name)
        if value is None:
            raise UserError(f"{where}: ${name} is not set (in {path!r})")
        return value

    return _VAR.sub(sub, path)


# --- the plan -------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Action:
    """One file operation in the image: ``mkdir``, ``symlink`` (``src`` is the link text) or
    ``copy`` (``src`` is the host file, copied dereferenced)."""

    kind: Literal["mkdir", "symlink", "copy"]
    dest: str
    src: str = ""
    mode: int | None = None  # for mkdir of a copied directory: the source's permission bits

    def describe(self) -> str:
        if self.kind == "mkdir":
            return f"mkdir -p {self.dest}"
        if self.kind == "symlink":
            return f"ln -sf {self.src} {self.dest}"
        return f"cp {self.src} {self.dest}"


@dataclass(slots=True)
class Plan:
    root: str
    actions: dict[str, Action] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, action: Action) -> None:
        old = self.actions.get(action.dest)
        if old is not None:
            if old.kind == "mkdir" and action.kind == "mkdir":
                return  # the first mkdir of a directory stays
            del self.actions[action.dest]  # the last copy or link to a destination wins
        self.actions[action.dest] = action

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions.values())


class _Planner:
    def __init__(self, root: Path, resolver: LibraryResolver) -> None:
        self.root = Path(os.path.abspath(root))
        # Occlum resolves relative sources against the parent of --root as given.
        self.workspace = self.root.parent
        self.resolver = resolver
        self.plan = Plan(str(self.root))
        # host source -> image destination of every planned copy, to skip deps already copied
        self.copied_sources: set[str] = set()
        self.copied_trees: list[str] = []
        self.strict_autodep: list[tuple[str, str, str]] = []  # (host file, image file, where)
        self.lenient_autodep: list[tuple[str, str]] = []  # (host file, image file)
        self._scripts_seen: set[str] = set()

    def in_root(self, image_path: str, where: str) -> str:
        """The host path of ``image_path`` (a path inside the image)."""
        return self.inside(os.path.join(self.root, image_path.lstrip("/")), where, image_path)

    def inside(self, host_path: str, where: str, shown: str | None = None) -> str:
        dest = os.path.normpath(host_path)
        if dest != str(self.root) and not dest.startswith(str(self.root) + os.sep):
            raise UserError(f"{where}: {shown or host_path} leads outside the root directory")
        return dest

    def source(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.workspace, path))

    def add_bom(self, loaded: LoadedBom) -> None:
        label = str(loaded.path)
        excludes = tuple(loaded.bom.excludes or ())
        for ti, target in enumerate(loaded.bom.targets or ()):
            tw = f"{label}: targets[{ti}]"
            timg = _expand(target.target, f"{tw}.target")
            tdir = self.in_root(timg, f"{tw}.target")
            self.plan.add(Action("mkdir", tdir))
            for i, d in enumerate(target.mkdirs or ()):
                w = f"{tw}.mkdirs[{i}]"
                self.plan.add(Action("mkdir", self.in_root(f"{timg}/{_expand(d, w)}", w)))
            for i, link in enumerate(target.createlinks or ()):
                w = f"{tw}.createlinks[{i}]"
                name = self.in_root(f"{timg}/{_expand(link.linkname, w)}", w)
                self.plan.add(Action("symlink", name, _expand(link.src, w)))
            for ci, src in enumerate(target.copy_ or ()):
                self.add_source(src, tdir, f"{tw}.copy[{ci}]", excludes)

    def add_source(self, src: BomSource, tdir: str, where: str, excludes: tuple[str, ...]) -> None:
        base = (
            self.source(_expand(src.from_, f"{where}.from")) if src.from_ else str(self.workspace)
        )
        if src.dirs is None and src.files is None:
            if src.from_ is None:
                raise UserError(f"{where}: needs `from`, `dirs` or `files`")
            self.add_dir(base, tdir, f"{where}.from", excludes, contents=True)
        for i, d in enumerate(src.dirs or ()):
            w = f"{where}.dirs[{i}]"
            expanded = _expand(d, w)
            path = os.path.normpath(os.path.join(base, expanded))
            self.add_dir(path, tdir, w, excludes, contents=expanded.endswith("/"))
        for i, f in enumerate(src.files or ()):
            w = f"{where}.files[{i}]"
            path = os.path.normpath(os.path.join(base, _expand(f.name, w)))
            if not os.path.exists(path):
                raise UserError(f"{w}: {path}: no such file")
            if not os.path.isfile(path):
                raise UserError(f"{w}: {path} is not a regular file (use dirs: for a directory)")
            if f.hash is not None:
                actual = sha256_file(path, w)
                if actual.lower() != f.hash.strip().lower():
                    raise UserError(
                        f"{w}: hash mismatch for {path}: the file's SHA-256 is {actual}, "
                        f"the BOM says {f.hash}"
                    )
            name = _expand(f.rename, f"{w}.rename") if f.rename else os.path.basename(path)
            dest = self.inside(os.path.join(tdir, name), w)
            self.add_copy(path, dest)
            if f.autodep:
                self.strict_autodep.append((path, dest, w))

    def add_copy(self, src: str, dest: str) -> None:
        self.plan.add(Action("copy", dest, src))
        self.copied_sources.add(os.path.realpath(src))

    def add_dir(
        self, path: str, tdir: str, where: str, excludes: tuple[str, ...], *, contents: bool
    ) -> None:
        if not os.path.isdir(path):
            raise UserError(f"{where}: {path} is not a directory")
        dest = tdir if contents else os.path.join(tdir, os.path.basename(path.rstrip("/")))
        tree = os.path.realpath(path)
        self.copied_trees.append(tree)
        self._copy_tree(path, dest, tree, excludes, "", set())

    def _copy_tree(
        self,
        src: str,
        dest: str,
        tree: str,
        excludes: tuple[str, ...],
        rel: str,
        active: set[str],
    ) -> None:
        real = os.path.realpath(src)
        if real in active:
            self.plan.warnings.append(f"{src}: symlink loop, not followed")
            return
        active = active | {real}
        try:
            st = os.stat(src)
            names = sorted(os.listdir(src))
        except OSError as e:
            raise UserError(f"cannot read directory {src}: {e.strerror}")
        self.plan.add(Action("mkdir", dest, mode=stat.S_IMODE(st.st_mode)))
        for name in names:
            r = f"{rel}/{name}" if rel else name
            if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(r, p.strip("/")) for p in excludes):
                continue
            s, d = os.path.join(src, name), os.path.join(dest, name)
            lst = os.lstat(s)
            if stat.S_ISLNK(lst.st_mode):
                target = os.path.realpath(s)
                if target == tree or target.startswith(tree + os.sep):
                    self.plan.add(Action("symlink", d, os.readlink(s)))
                    continue
                if not os.path.exists(s):
                    self.plan.warnings.append(f"{s}: dangling symlink out of the tree, skipped")
                    continue
                lst = os.stat(s)  # an unsafe link: copy what it points to
            if stat.S_ISDIR(lst.st_mode):
                self._copy_tree(s, d, tree, excludes, r, active)
            elif stat.S_ISREG(lst.st_mode):
                self.add_copy(s, d)
                self.lenient_autodep.append((s, d))
            else:
                self.plan.warnings.append(f"{s}: not a regular file, directory or symlink, skipped")

    def autodep(self) -> None:
        for path, dest, where in self.strict_autodep:
            self._add_needs(path, dest, where)
        for path, dest in self.lenient_autodep:
            self._add_needs(path, dest, None)

    def _add_needs(self, path: str, dest: str, where: str | None) -> None:
        """Add what host file ``path``, copied to ``dest`` (in the root), needs: an ELF file its
        interpreter and libraries, a linker script the files it names, and what those need.
        Something missing is an error where the BOM names the file (``where``), else a
        warning."""
        if not is_elf(path):
            if _maybe_linker_script(path):
                self._add_script_inputs(path, where)
            return
        deps = self.resolver.find_dependencies(path)
        for name, by in deps.missing:
            if where is not None:
                raise UserError(
                    f"{where}: {path} needs {name}"
                    + (f" (through {by})" if by != path else "")
                    + ", which cannot be found on this host (or set autodep: false)"
                )
            self.plan.warnings.append(f"autodep: {by} needs {name}, which cannot be found")
        # where each object lands in the image: a library found through an $ORIGIN entry is
        # looked for there relative to where that object is, which need not be its host place
        placed = {path: "/" + os.path.relpath(dest, self.root)}
        for dep in deps.paths:
            at = os.path.normpath(dep)
            owner_rel = deps.origin_relative.get(dep)
            if owner_rel is not None and owner_rel[0] in placed:
                owner, rel = owner_rel
                at = os.path.normpath(os.path.join(os.path.dirname(placed[owner]), rel))
            placed[dep] = at
            if where is None and self._already_copied(dep):
                continue
            if at == os.path.normpath(dep):
                self.add_dependency(dep)
            else:
                dest_at = self.in_root(at, "autodep")
                if dest_at not in self.plan.actions:
                    self.add_copy(dep, dest_at)

    def _add_script_inputs(self, path: str, where: str | None) -> None:
        real = os.path.realpath(path)
        if real in self._scripts_seen:
            return
        self._scripts_seen.add(real)
        inputs = linker_script_inputs(path)
        if inputs is None:
            return
        for name in inputs.missing:
            if where is not None:
                raise UserError(
                    f"{where}: {path} is a linker script naming {name}, which cannot be found "
                    "on this host (or set autodep: false)"
                )
            self.plan.warnings.append(f"autodep: {path} names {name}, which cannot be found")
        for named in inputs.paths:
            # the script names absolute paths (or ones found as ld finds them): the linker
            # inside the image opens them at those paths
            if where is None and self._already_copied(named):
                continue
            self.add_dependency(named)
            self._add_needs(named, self.in_root(named, "autodep"), where)

    def _already_copied(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real in self.copied_sources or any(
            real.startswith(t + os.sep) for t in self.copied_trees
        )

    def add_dependency(self, path: str) -> None:
        """Copy host file ``path`` to the same path in the image, its symlinks as symlinks."""
        content = os.path.realpath(path)
        cur = os.path.normpath(path)
        for _ in range(40):
            if not os.path.islink(cur):
                break
            text = os.readlink(cur)
            self.plan.add(Action("symlink", self.in_root(cur, "autodep"), text))
            cur = os.path.normpath(os.path.join(os.path.dirname(cur), text))
        dest = self.in_root(cur, "autodep")
        existing = self.plan.actions.get(dest)
        if existing is None or existing.kind != "copy":
            self.plan.add(Action("copy", dest, content))


def _maybe_linker_script(path: str) -> bool:
    """Whether a file that is no ELF file is worth reading as a linker script: ld finds
    ``-lNAME`` as ``libNAME.so``, and a script elsewhere (a text file that happens to say
    ``INPUT(``) must not make copy_bom look for files."""
    return path.endswith(".so")


def sha256_file(path: str, where: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise UserError(f"{where}: cannot read {path}: {e.strerror}")
    return h.hexdigest().upper()


def plan_bom(
    bom_file: str | os.PathLike[str],
    root: str | os.PathLike[str],
    include_dirs: tuple[str, ...] = (),
    *,
    resolver: LibraryResolver | None = None,
) -> Plan:
    """Everything ``copy_bom -f bom_file --root root`` would do, checked but not done."""
    boms = resolve_includes(Path(bom_file), tuple(os.path.abspath(d) for d in include_dirs))
    planner = _Planner(Path(root), resolver or LibraryResolver())
    for loaded in boms:
        planner.plan.warnings.extend(loaded.warnings)
        planner.add_bom(loaded)
    planner.autodep()
    return planner.plan


# --- doing it -------------------------------------------------------------------------------


@dataclass(slots=True)
class CopyReport:
    copied: int = 0
    unchanged: int = 0
    bytes_copied: int = 0
    links: int = 0
    dirs: int = 0


def copy_bytes_total(plan: Plan) -> int:
    total = 0
    for a in plan:
        if a.kind == "copy":
            try:
                total += os.stat(a.src).st_size
            except OSError:
                pass
    return total


def execute_plan(plan: Plan, *, on_bytes: Callable[[int], None] | None = None) -> CopyReport:
    """Carry out ``plan`` in its root, never writing outside it."""
    root = os.path.realpath(plan.root)
    os.makedirs(root, exist_ok=True)
    report = CopyReport()
    dir_modes: list[tuple[str, int]] = []
    for a in plan:
        if a.kind == "mkdir":
            if _safe_makedirs(root, a.dest):
                report.dirs += 1
            if a.mode is not None:
                dir_modes.append((a.dest, a.mode))
        elif a.kind == "symlink":
            _safe_makedirs(root, os.path.dirname(a.dest))
            if _place_symlink(a.dest, a.src):
                report.links += 1
        else:
            _safe_makedirs(root, os.path.dirname(a.dest))
            size = _copy_if_changed(a.src, a.dest)
            if size is None:
                report.unchanged += 1
            else:
                report.copied += 1
                report.bytes_copied += size
            if on_bytes is not None:
                try:
                    on_bytes(os.stat(a.src).st_size)
                except OSError:
                    pass
    for d, mode in reversed(dir_modes):
        try:
            os.chmod(d, mode | stat.S_IRUSR | stat.S_IWUSR | stat.S_IXUSR)
        except OSError:
            pass
    return report


def _safe_makedirs(root: str, path: str) -> bool:
    """``mkdir -p`` that refuses to go through a symlink leading out of ``root``."""
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    real = os.path.realpath(existing)
    if real != root and not real.startswith(root + os.sep):
        raise UserError(
            f"refusing to write {path}: {existing} leads outside the root directory ({real})"
        )
    if existing == path and os.path.isdir(path):
        return False
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise UserError(f"cannot create directory {path}: a file is in the way")
    except OSError as e:
        raise UserError(f"cannot create directory {path}: {e.strerror}")
    return True


def _place_symlink(dest: str, text: str) -> bool:
    if os.path.islink(dest):
        if os.readlink(dest) == text:
            return False
        os.unlink(dest)
    elif os.path.isdir(dest):
        raise UserError(f"cannot create symlink {dest}: a directory is in the way")
    elif os.path.lexists(dest):
        os.unlink(dest)
    try:
        os.symlink(text, dest)
    except OSError as e:
        raise UserError(f"cannot create symlink {dest}: {e.strerror}")
    return True


def _copy_if_changed(src: str, dest: str) -> int | None:
    """Copy unless ``dest`` already has ``src``'s size and mtime; the bytes copied or None."""
    try:
        st = os.stat(src)
    except OSError as e:
        raise UserError(f"cannot read {src}: {e.strerror}")
    try:
        dst = os.lstat(dest)
    except FileNotFoundError:
        dst = None
    if dst is not None:
        if stat.S_ISDIR(dst.st_mode):
            raise UserError(f"cannot copy {src} to {dest}: a directory is in the way")
        if (
            stat.S_ISREG(dst.st_mode)
            and dst.st_size == st.st_size
            and dst.st_mtime_ns == st.st_mtime_ns
        ):
            if stat.S_IMODE(dst.st_mode) != stat.S_IMODE(st.st_mode):
                os.chmod(dest, stat.S_IMODE(st.st_mode))
            return None
    tmp = f"{dest}.copy_bom-{os.getpid()}"
    try:
        with open(src, "rb") as fsrc, open(tmp, "wb") as fdst:
            while chunk := fsrc.read(1 << 20):
                fdst.write(chunk)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, dest)  # replaces a symlink at dest instead of writing through it
    except PermissionError:
        _unlink_quietly(tmp)
        raise UserError(f"cannot copy {src}: permission denied")
    except OSError as e:
        _unlink_quietly(tmp)
        raise UserError(f"cannot copy {src} to {dest}: {e.strerror}")
    return st.st_size


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
