"""copy_bom: BOM files, includes, hashes, dry runs and ELF dependency copying."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from occlum.cli.copy_bom import cli
from occlum.instance.elfdeps import LibraryResolver, read_elf_info

LS = shutil.which("ls") or "/bin/ls"


def copy_bom(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def resolve_in(root: Path, path: str) -> Path:
    """Follow symlinks the way the LibOS would, inside ``root``."""
    for _ in range(40):
        host = root / path.lstrip("/")
        if not host.is_symlink():
            return host
        text = os.readlink(host)
        path = text if text.startswith("/") else os.path.join(os.path.dirname(path), text)
    raise AssertionError("symlink loop")


def tree(root: Path) -> dict[str, str]:
    """path -> "d", "f:<content hash>" or "l:<link text>" for everything below root."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "l:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "d"
            else:
                out[rel] = "f:" + hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace: cwd, with image/ as the root and some source files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "image").mkdir()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub/b.txt").write_text("B")
    (src / "junk.pyc").write_text("junk")
    os.symlink("a.txt", src / "inside")
    os.symlink(str(tmp_path / "outside.txt"), src / "outside")
    (tmp_path / "outside.txt").write_text("O")
    return tmp_path


def test_copy_ls_with_autodep_finds_libc_and_the_loader(ws: Path) -> None:
    (ws / "app.yaml").write_text(f"targets:\n  - target: /bin\n    copy:\n      - files: [{LS}]\n")
    r = copy_bom("-f", "app.yaml", "--root", "image")
    assert r.exit_code == 0, r.output
    img = ws / "image"
    assert (img / "bin/ls").read_bytes() == Path(LS).read_bytes()
    info = read_elf_info(LS)
    assert info is not None and info.interp is not None
    assert resolve_in(img, info.interp).is_file(), "the loader and its symlink chain are there"
    libcs = list(img.rglob("libc.so.6"))
    assert libcs and libcs[0].stat().st_size > 100_000
    # every dependency the resolver found sits at its host path in the image
    for dep in LibraryResolver().find_dependencies(LS).paths:
        assert os.path.lexists(img / dep.lstrip("/")), dep


def test_symlinked_dependencies_keep_their_links(ws: Path) -> None:
    (ws / "app.yaml").write_text(f"targets:\n  - target: /bin\n    copy:\n      - files: [{LS}]\n")
    copy_bom("-f", "app.yaml", "--root", "image")
    for dep in LibraryResolver().find_dependencies(LS).paths:
        if os.path.islink(dep):
            assert os.readlink(ws / "image" / dep.lstrip("/")) == os.readlink(dep)


def test_dirs_files_links_rename_excludes(ws: Path) -> None:
    (ws / "app.yaml").write_text(
        """
excludes: ["*.pyc"]
targets:
  - target: /
    mkdirs: [proc, opt/x]
    createlinks:
      - {src: ../a.txt, linkname: opt/a-link}
  - target: /data
    copy:
      - from: src
        dirs: [sub]
        files: [a.txt, {name: sub/b.txt, rename: renamed.txt, autodep: false}]
      - dirs: [src]
  - target: /flat
    copy:
      - dirs: [src/]
  - target: /whole
    copy:
      - from: src
"""
    )
    r = copy_bom("-f", "app.yaml", "--root", "image")
    assert r.exit_code == 0, r.output
    t = tree(ws / "image")
    assert t["proc"] == t["opt/x"] == "d"
    assert t["opt/a-link"] == "l:../a.txt"
    assert (ws / "image/data/sub/b.txt").read_text() == "B"
    assert (ws / "image/data/a.txt").read_text() == "A"
    assert (ws / "image/data/renamed.txt").read_text() == "B"
    assert t["data/src/inside"] == "l:a.txt"  # points inside the copied tree: kept
    assert (ws / "image/data/src/outside").read_text() == "O"  # points out: dereferenced
    assert not (ws / "image/data/src/outside").is_symlink()
    assert "data/src/junk.pyc" not in t
    assert (ws / "image/flat/a.txt").read_text() == "A" and "flat/src" not in t
    assert (ws / "image/whole/sub/b.txt").read_text() == "B"
    # a second run copies nothing
    r = copy_bom("-f", "app.yaml", "--root", "image")
    assert " 0 files copied" in r.stderr


def test_dry_run_changes_nothing(ws: Path) -> None:
    (ws / "app.yaml").write_text(
        f"targets:\n  - target: /bin\n    mkdirs: [sub]\n    copy:\n      - files: [{LS}]\n"
        "      - dirs: [src]\n"
    )
    before = tree(ws)
    r = copy_bom("-f", "app.yaml", "--root", "image", "--dry-run")
    assert r.exit_code == 0, r.output
    assert tree(ws) == before
    assert f"cp {LS} {ws}/image/bin/ls" in r.stdout
    assert f"mkdir -p {ws}/image/bin/sub" in r.stdout
    assert "libc.so.6" in r.stdout


def test_hash_is_checked(ws: Path) -> None:
    good = hashlib.sha256(b"A").hexdigest()
    (ws / "ok.yaml").write_text(
        f"targets:\n  - target: /\n    copy:\n      - from: src\n        files:\n"
        f"          - {{name: a.txt, hash: {good.upper()}}}\n"
    )
    assert copy_bom("-f", "ok.yaml", "--root", "image").exit_code == 0
    (ws / "bad.yaml").write_text(
        "targets:\n  - target: /\n    copy:\n      - from: src\n        files:\n"
        f"          - {{name: a.txt, hash: '{'0' * 64}'}}\n"
    )
    r = copy_bom("-f", "bad.yaml", "--root", "image2")
    assert r.exit_code == 1
    assert r.stderr == (
        f"copy_bom: error: bad.yaml: targets[0].copy[0].files[0]: hash mismatch for "
        f"{ws}/src/a.txt: the file's SHA-256 is {good.upper()}, the BOM says {'0' * 64}\n"
    )
    assert not (ws / "image2").exists()


def test_includes_from_the_bom_dir_and_include_dirs(ws: Path) -> None:
    (ws / "tmpl").mkdir()
    (ws / "tmpl/base.yaml").write_text("targets:\n  - target: /\n    mkdirs: [bin, etc]\n")
    (ws / "boms").mkdir()
    (ws / "boms/mid.yaml").write_text(
        "includes: [base.yaml]\ntargets:\n  - target: /etc\n    copy:\n"
        "      - from: src\n        files: [a.txt]\n"
    )
    (ws / "boms/app.yaml").write_text("includes: [mid.yaml, base.yaml]\n")
    r = copy_bom("-f", "boms/app.yaml", "--root", "image")
    assert r.exit_code == 1
    assert r.stderr.startswith("copy_bom: error: boms/mid.yaml: includes[0]: cannot find base.yaml")
    r = copy_bom("-f", "boms/app.yaml", "--root", "image", "--include-dir", "tmpl")
    assert r.exit_code == 0, r.output
    assert (ws / "image/bin").is_dir() and (ws / "image/etc/a.txt").read_text() == "A"


def test_include_cycle(ws: Path) -> None:
    (ws / "a.yaml").write_text("includes: [b.yaml]\n")
    (ws / "b.yaml").write_text("includes: [a.yaml]\n")
    r = copy_bom("-f", "a.yaml", "--root", "image")
    assert r.exit_code == 1
    assert "include cycle:" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("targets: {}\n", "x.yaml: targets: {} must be a list"),
        ("targets:\n  - mkdirs: [a]\n", "x.yaml: targets[0].target: is required"),
        (
            "targets:\n  - target: /\n    copy:\n      - files: [3]\n",
            "x.yaml: targets[0].copy[0].files[0]: 3 is not a file "
            "(use a path, or {name: ..., hash: ..., rename: ...})",
        ),
        (
            "targets:\n  - target: /\n    copy:\n      - files: [{name: a, autodep: maybe}]\n",
            'x.yaml: targets[0].copy[0].files[0].autodep: "maybe" must be true or false',
        ),
        (
            "targets: [\n",
            "x.yaml: line 2, column 1: invalid YAML: expected the node content, but found '<stream end>'",
        ),
        ("- a\n", "x.yaml: the top level must be a mapping (includes, excludes, targets)"),
        (
            "targets:\n  - target: /\n    copy:\n      - files: [nope]\n",
            "x.yaml: targets[0].copy[0].files[0]: {ws}/nope: no such file",
        ),
        (
            "targets:\n  - target: /../..\n",
            "x.yaml: targets[0].target: /../.. leads outside the root directory",
        ),
        (
            "targets:\n  - target: /\n    mkdirs: [$NO_SUCH_VAR_HERE/x]\n",
            "x.yaml: targets[0].mkdirs[0]: $NO_SUCH_VAR_HERE is not set (in '$NO_SUCH_VAR_HERE/x')",
        ),
        ("targets: " + "[" * 100_000, "x.yaml: invalid YAML: collections nested too deep"),
        (
            "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 12))
            + "targets: *a11\n",
            "x.yaml: more than 1000000 values once aliases are expanded",
        ),
    ],
)
def test_bad_bom_files(ws: Path, text: str, message: str) -> None:
    (ws / "x.yaml").write_text(text)
    r = copy_bom("-f", "x.yaml", "--root", "image")
    assert r.exit_code == 1
    assert r.stderr == f"copy_bom: error: {message.replace('{ws}', str(ws))}\n"


def test_missing_dependency_is_an_error_for_listed_files(ws: Path) -> None:
    fake = ws / "prog"
    shutil.copy(LS, fake)
    data = bytearray(fake.read_bytes())
    i = data.find(b"libselinux.so.1")
    assert i > 0
    data[i : i + 15] = b"libnothere.so.1"
    fake.write_bytes(bytes(data))
    (ws / "x.yaml").write_text("targets:\n  - target: /bin\n    copy:\n      - files: [prog]\n")
    r = copy_bom("-f", "x.yaml", "--root", "image")
    assert r.exit_code == 1
    assert "needs libnothere.so.1, which cannot be found" in r.stderr
    (ws / "x.yaml").write_text(
        "targets:\n  - target: /bin\n    copy:\n      - files: [{name: prog, autodep: false}]\n"
    )
    assert copy_bom("-f", "x.yaml", "--root", "image").exit_code == 0


def test_refuses_to_write_through_an_absolute_symlink(ws: Path) -> None:
    outside = ws / "elsewhere"
    outside.mkdir()
    os.symlink(str(outside), ws / "image/lib")
    (ws / "x.yaml").write_text(
        "targets:\n  - target: /lib\n    copy:\n      - from: src\n        files: [a.txt]\n"
    )
    r = copy_bom("-f", "x.yaml", "--root", "image")
    assert r.exit_code == 1
    assert "leads outside the root directory" in r.stderr
    assert list(outside.iterdir()) == []


def test_runpath_origin(tmp_path: Path) -> None:
    resolver = LibraryResolver()
    info = read_elf_info(LS)
    assert info is not None and info.elf_class == 64 and info.machine == "EM_X86_64"
    assert resolver._expand(("$ORIGIN/../lib", "${ORIGIN}"), "/opt/app/bin") == (
        "/opt/app/lib",
        "/opt/app/bin",
    )
    assert read_elf_info(str(tmp_path)) is None
    (tmp_path / "t").write_text("#!/bin/sh\n")
    assert read_elf_info(str(tmp_path / "t")) is None
    assert resolver.find_dependencies(str(tmp_path / "t")).paths == []


def test_glibc_programs_get_libgcc_s(ws: Path) -> None:
    """glibc opens libgcc_s.so.1 itself (pthread_exit, pthread_cancel): copy_bom adds it."""
    host = LibraryResolver().find_dependencies(LS)
    libgcc = [p for p in host.paths if os.path.basename(p) == "libgcc_s.so.1"]
    if not any(os.path.exists(d + "/libgcc_s.so.1") for d in ("/lib/x86_64-linux-gnu", "/lib64")):
        pytest.skip("the host has no libgcc_s.so.1")
    assert libgcc, "found as glibc would find it"
    (ws / "app.yaml").write_text(f"targets:\n  - target: /bin\n    copy:\n      - files: [{LS}]\n")
    assert copy_bom("-f", "app.yaml", "--root", "image").exit_code == 0
    assert resolve_in(ws / "image", libgcc[0]).stat().st_size > 10_000


def test_a_missing_libgcc_s_is_no_error() -> None:
    libc = next(p for p in LibraryResolver().find_dependencies(LS).paths if p.endswith("libc.so.6"))
    # a host whose loader knows libc (and ls's other libraries) but no libgcc_s
    cache = {
        os.path.basename(p): (p,)
        for p in LibraryResolver().find_dependencies(LS).paths
        if not p.endswith("libgcc_s.so.1")
    }
    deps = LibraryResolver(cache=cache, default_dirs=(), conf_dirs=()).find_dependencies(LS)
    assert libc in deps.paths
    assert not any(p.endswith("libgcc_s.so.1") for p in deps.paths)
    assert deps.missing == []


# --- linker scripts and $ORIGIN run paths ---------------------------------------------------

CC = shutil.which("gcc")


def _bom(ws: Path, target: str, files: list[str]) -> None:
    listed = ", ".join(files)
    (ws / "app.yaml").write_text(
        f"targets:\n  - target: {target}\n    copy:\n      - files: [{listed}]\n"
    )


def test_a_linker_script_brings_the_files_it_names(ws: Path) -> None:
    lib = ws / "sysroot" / "lib"
    lib.mkdir(parents=True)
    for name in ("libfoo.so.1", "libfoo_vec.so.1", "libbar.a", "libbaz.so", "extra.o"):
        (lib / name).write_bytes(b"\0not really " + name.encode())
    (lib / "libfoo.so").write_text(
        "/* GNU ld script\n   Use the shared library */\n"
        "OUTPUT_FORMAT(elf64-x86-64)\n"
        f"GROUP ( {lib}/libfoo.so.1 {lib}/libbar.a AS_NEEDED ( {lib}/libfoo_vec.so.1 ) )\n"
        "INPUT(-lbaz, extra.o)\n"
    )
    _bom(ws, "/usr/lib", [str(lib / "libfoo.so")])
    r = copy_bom("-f", "app.yaml", "--root", "image")
    assert r.exit_code == 0, r.output
    img = ws / "image"
    assert (img / "usr/lib/libfoo.so").read_bytes() == (lib / "libfoo.so").read_bytes()
    for name in ("libfoo.so.1", "libfoo_vec.so.1", "libbar.a", "libbaz.so", "extra.o"):
        # at their host paths: the linker inside opens the paths the script names
        assert (img / str(lib / name).lstrip("/")).read_bytes() == (lib / name).read_bytes()
    (lib / "libfoo_vec.so.1").unlink()
    r = copy_bom("-f", "app.yaml", "--root", "image")
    assert r.exit_code == 1 and "linker script naming" in r.stderr, r.output
    assert "libfoo_vec.so.1" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_text_file_that_is_no_library_is_no_linker_script(ws: Path) -> None:
    (ws / "notes.txt").write_text("INPUT( /no/such/file )\n")
    _bom(ws, "/etc", [str(ws / "notes.txt")])
    assert copy_bom("-f", "app.yaml", "--root", "image").exit_code == 0


@pytest.mark.skipif(
    not os.path.exists("/usr/lib/x86_64-linux-gnu/libm.so"), reason="no libm.so on the host"
)
def test_debian_libm_so_brings_libm_and_libmvec(ws: Path) -> None:
    script = "/usr/lib/x86_64-linux-gnu/libm.so"
    if Path(script).read_bytes()[:4] == b"\x7fELF":
        pytest.skip("libm.so is no linker script here")
    _bom(ws, "/usr/lib/x86_64-linux-gnu", [script])
    assert copy_bom("-f", "app.yaml", "--root", "image").exit_code == 0
    for name in ("libm.so.6", "libmvec.so.1"):
        img = ws / "image"
        found = [p for p in img.rglob(name) if resolve_in(img, f"/{p.relative_to(img)}").is_file()]
        assert found, f"{name} is not in the image"


def _origin_app(base: Path, rpath_flag: str) -> Path:
    """bin/prog needing lib/libone.so through $ORIGIN/../lib; libone needing libtwo.so (in
    lib/more) through its own $ORIGIN/more."""
    assert CC is not None
    (base / "bin").mkdir(parents=True)
    (base / "lib" / "more").mkdir(parents=True)
    (base / "two.c").write_text("int two(void) { return 2; }\n")
    (base / "one.c").write_text("int two(void);\nint one(void) { return two() - 1; }\n")
    (base / "prog.c").write_text(
        '#include <stdio.h>\nint one(void);\nint main(void) { printf("%d\\n", one() + 41); }\n'
    )

    def cc(*args: str) -> None:
        subprocess.run([CC, *args], cwd=base, check=True, capture_output=True)

    cc("-shared", "-fPIC", "-o", "lib/more/libtwo.so", "two.c")
    cc("-shared", "-fPIC", "-o", "lib/libone.so", "one.c", "-Llib/more", "-ltwo",
       rpath_flag, "-Wl,-rpath,$ORIGIN/more")  # fmt: skip
    cc("-o", "bin/prog", "prog.c", "-Llib", "-lone", rpath_flag, "-Wl,-rpath,$ORIGIN/../lib")
    return base / "bin" / "prog"


@pytest.mark.skipif(CC is None, reason="needs gcc")
@pytest.mark.parametrize(("tags", "listed"), [("runpath", "files"), ("rpath", "files"),
                                              ("runpath", "dirs")])  # fmt: skip
def test_origin_libraries_follow_the_program_where_it_is_copied(
    ws: Path, tags: str, listed: str
) -> None:
    flag = "-Wl,--enable-new-dtags" if tags == "runpath" else "-Wl,--disable-new-dtags"
    prog = _origin_app(ws / "app", flag)
    info = read_elf_info(str(prog))
    assert info is not None and (info.runpath if tags == "runpath" else info.rpath)
    if listed == "files":
        _bom(ws, "/opt/x/bin", [str(prog)])
    else:  # the program's directory, copied whole: its libraries are outside it
        (ws / "app.yaml").write_text(
            f"targets:\n  - target: /opt/x\n    copy:\n      - dirs: [{prog.parent}]\n"
        )
    r = copy_bom("-f", "app.yaml", "--root", "image")
    assert r.exit_code == 0, r.output
    img = ws / "image"
    assert (img / "opt/x/lib/libone.so").is_file()
    assert (img / "opt/x/lib/more/libtwo.so").is_file()
    # ld.so itself agrees: the copied program runs, finding them through $ORIGIN
    out = subprocess.run([str(img / "opt/x/bin/prog")], capture_output=True, text=True)
    assert out.stdout == "42\n", out.stderr


JDKS = sorted(glob.glob("/usr/lib/jvm/*/bin/java"))


@pytest.mark.skipif(not JDKS, reason="no JDK in /usr/lib/jvm")
def test_the_jdk_java_launcher_gets_libjli_and_libjvm_its_libraries(ws: Path) -> None:
    java = os.path.realpath(JDKS[0])
    home = os.path.dirname(os.path.dirname(java))
    _bom(ws, "/opt/java/bin", [java])
    r = copy_bom("-f", "app.yaml", "--root", "image")
    assert r.exit_code == 0, r.output
    img = ws / "image"
    assert (img / "opt/java/lib/libjli.so").is_file()  # java's RPATH: $ORIGIN/../lib
    libjvm = f"{home}/lib/server/libjvm.so"
    if os.path.exists(libjvm):
        _bom(ws, "/opt/java/lib/server", [libjvm])
        r = copy_bom("-f", "app.yaml", "--root", "image")
        assert r.exit_code == 0, r.output
        for dep in LibraryResolver().find_dependencies(libjvm).paths:
            assert os.path.lexists(img / dep.lstrip("/")), dep
