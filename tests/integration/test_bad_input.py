"""User errors end in one clear line on stderr and a non-zero exit, never a Python traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance, Result
from occlum.platform.limits import PidsCgroup, pids_parent

pytestmark = pytest.mark.needs_root


def _one_clear_line(res: Result) -> None:
    assert res.code != 0, res.describe()
    assert "Traceback" not in res.stderr, res.describe()
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr:\n{res.describe()}"


@pytest.fixture(scope="module")
def bad_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = Instance.new(tmp_path_factory.mktemp("badinput") / "instance")
    inst.configure()
    bin_dir = inst.image / "bin"
    (bin_dir / "notelf").write_text("this is not a program\n")
    (bin_dir / "notelf").chmod(0o755)
    true = shutil.which("true") or "/bin/true"
    elf = Path(true).read_bytes()
    (bin_dir / "truncated").write_bytes(elf[:200])
    (bin_dir / "truncated").chmod(0o755)
    absurd = bytearray(elf)
    absurd[32:40] = (0xFFFF_FFFF_FFFF_0000).to_bytes(8, "little")  # e_phoff
    (bin_dir / "absurd-phoff").write_bytes(bytes(absurd))
    (bin_dir / "absurd-phoff").chmod(0o755)
    (bin_dir / "empty").write_bytes(b"")
    (bin_dir / "empty").chmod(0o755)
    (bin_dir / "noexec").write_bytes(elf)
    (bin_dir / "noexec").chmod(0o644)
    # a dynamic program whose ELF interpreter is not in the image, a script whose #! one is not
    interp = libos.elf_interpreter(Path(true))
    assert interp is not None, f"{true} is expected to be a dynamic program"
    elsewhere = ("/nowhere/" + "x" * len(interp))[: len(interp)]
    (bin_dir / "nointerp").write_bytes(elf.replace(interp.encode(), elsewhere.encode(), 1))
    (bin_dir / "nointerp").chmod(0o755)
    (bin_dir / "noshell").write_text("#!/bin/no-such-shell -e\necho unreachable\n")
    (bin_dir / "noshell").chmod(0o755)
    libos.place_with_dependencies(
        inst.image,
        {"/bin/true": Path(true), "/opt/true": Path(true), "/bin/sh": Path("/bin/dash")},
    )
    inst.build()
    yield inst
    shutil.rmtree(inst.path, ignore_errors=True)


def test_control_true_runs(bad_instance: Instance) -> None:
    res = bad_instance.run(["/bin/true"])
    assert res.code == 0, res.describe()


@pytest.mark.parametrize(
    "argv",
    [
        ["/bin/missing-program"],
        ["/bin/notelf"],
        ["/bin/truncated"],
        ["/bin/absurd-phoff"],
        ["/bin/empty"],
        ["/bin/noexec"],
        ["/bin"],
        ["/opt/true"],  # present in the image but outside entry_points
        ["bin/true"],  # not absolute
    ],
    ids=[
        "missing",
        "not-elf",
        "truncated-elf",
        "absurd-phoff",
        "empty",
        "no-exec-bit",
        "directory",
        "outside-entry-points",
        "relative",
    ],
)
def test_bad_program(bad_instance: Instance, argv: list[str]) -> None:
    res = bad_instance.run(argv)
    _one_clear_line(res)
    assert argv[0] in res.stderr, res.describe()


@pytest.mark.parametrize(
    ("program", "missing"),
    [("/bin/nointerp", "/nowhere/x"), ("/bin/noshell", "/bin/no-such-shell")],
    ids=["elf-interpreter", "script-interpreter"],
)
def test_missing_interpreter_is_named(bad_instance: Instance, program: str, missing: str) -> None:
    """Not "no such file" about a program that is there: the file that is missing, and how
    to put it in."""
    res = bad_instance.run([program])
    _one_clear_line(res)
    assert res.code == 127, res.describe()
    assert program in res.stderr and missing in res.stderr, res.describe()
    assert "copy_bom" in res.stderr, res.describe()
    assert "no such file" not in res.stderr, res.describe()
    # a program inside that runs it gets ENOENT, as on Linux; the log says which file is gone
    res = bad_instance.run(["/bin/sh", "-c", f"{program}; exit $?"], log_level="warn")
    assert res.code == 127, res.describe()
    assert "Traceback" not in res.stderr, res.describe()
    warned = [ln for ln in res.stderr.splitlines() if ln.startswith("[occlum warn] exec by")]
    assert len(warned) == 1, res.describe()
    assert "/bin/sh" in warned[0] and missing in warned[0] and "copy_bom" in warned[0]


def test_no_program(bad_instance: Instance) -> None:
    """A usage error: the CLI's usage text is fine here, a traceback is not."""
    res = bad_instance.run([])
    assert res.code != 0, res.describe()
    assert "Traceback" not in res.stderr, res.describe()
    assert "PROGRAM" in res.stderr or "program" in res.stderr, res.describe()


def test_bad_log_level(bad_instance: Instance) -> None:
    _one_clear_line(bad_instance.run(["/bin/true"], log_level="loud"))


def _occlum(args: list[str], cwd: Path) -> Result:
    proc = subprocess.run(
        [*libos._tool("occlum"), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    "text",
    [
        "{ not json",
        '{"resource_limits": {"user_space_size": "lots"}}',
        '{"entry_points": "/bin"}',
        '{"mount": [{"target": "/host", "type": "hostfs"}]}',
        "[]",
        "[" * 100_000,  # json recurses once per bracket
    ],
    ids=[
        "syntax",
        "bad-size",
        "entry-points-not-list",
        "hostfs-without-source",
        "not-object",
        "nested-too-deep",
    ],
)
def test_bad_config(tmp_path: Path, text: str) -> None:
    inst = Instance.new(tmp_path / "instance")
    inst.config_path.write_text(text)
    res = _occlum(["build"], inst.path)
    _one_clear_line(res)
    assert "Occlum.json" in res.stderr, res.describe()


def test_run_before_build(tmp_path: Path) -> None:
    inst = Instance.new(tmp_path / "instance")
    _one_clear_line(_occlum(["run", "/bin/true"], inst.path))


def test_not_an_instance(tmp_path: Path) -> None:
    _one_clear_line(_occlum(["run", "/bin/true"], tmp_path))
    _one_clear_line(_occlum(["build"], tmp_path))


def test_new_on_existing_dir(tmp_path: Path) -> None:
    inst = Instance.new(tmp_path / "instance")
    _one_clear_line(_occlum(["new", str(inst.path)], tmp_path))


def _in_pids_cgroup(
    limit: int, args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> Result:
    """Run occlum in a pids cgroup of its own allowing ``limit`` tasks (threads included)."""
    group = PidsCgroup.create(f"occlumtest-{os.getpid()}-{limit}", limit)
    assert group is not None
    try:
        proc = subprocess.run(
            [*libos._tool("occlum"), *args], cwd=cwd, capture_output=True, text=True,
            check=False, timeout=120, env={**os.environ, **(env or {})},
            preexec_fn=lambda: Path(group.procs).write_text("0"),
        )  # fmt: skip
    finally:
        for sub in group.path.iterdir():  # a group the LibOS made inside (cgroup v1)
            if sub.is_dir():
                sub.rmdir()
        group.remove()
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.skipif(pids_parent() is None, reason="needs a writable pids cgroup (root)")
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_fork_refused_by_the_host_at_start(bad_instance: Instance, limit: int) -> None:
    """The host's limit on processes (here a pids cgroup; RLIMIT_NPROC alike) refuses the
    launcher's forks: of the setup process (1), of init (2), of the first program (3)."""
    res = _in_pids_cgroup(limit, ["run", "/bin/true"], bad_instance.path)
    _one_clear_line(res)
    assert "cannot start the instance" in res.stderr and "fork" in res.stderr, res.describe()
    assert "max_num_of_threads" not in res.stderr  # not the instance's limit


@pytest.mark.skipif(pids_parent() is None, reason="needs a writable pids cgroup (root)")
def test_fork_refused_by_the_host_at_occlum_start(bad_instance: Instance) -> None:
    res = _in_pids_cgroup(1, ["start"], bad_instance.path)
    _one_clear_line(res)
    assert "cannot start the server: fork" in res.stderr, res.describe()


@pytest.mark.skipif(pids_parent() is None, reason="needs a writable pids cgroup (root)")
def test_fork_refused_when_compiling_the_default_init(tmp_path: Path) -> None:
    """`occlum new` compiles the default init once per cache: its compiler cannot start."""
    res = _in_pids_cgroup(
        1, ["new", str(tmp_path / "instance")], tmp_path,
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    _one_clear_line(res)
    assert "to build the default init" in res.stderr, res.describe()
