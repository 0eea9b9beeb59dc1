"""The ``occlum`` command line: new, init, build, status, run (with a stand-in kernel)."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

import occlum.cli.main as cli_main
import occlum.instance.layout as layout
from occlum import __version__
from occlum.cli._terminal import RichProgress
from occlum.cli.copy_bom import cli as copy_bom_cli
from occlum.cli.main import cli
from occlum.instance.layout import IMAGE_DIRS, Instance
from occlum.kernel.spec import RunSpec


def occlum(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def in_dir(inst: Path, *args: str) -> Result:
    return occlum("--instance-dir", str(inst), *args)


@pytest.fixture
def inst(tmp_path: Path) -> Path:
    r = occlum("--instance-dir", str(tmp_path), "new", "app")
    assert r.exit_code == 0, r.output
    return tmp_path / "app"


def test_new_creates_an_occlum_instance(inst: Path) -> None:
    assert (inst / "Occlum.json").is_file()
    assert (inst / ".__occlum_status").read_text() == "initialized\n"
    for d in IMAGE_DIRS:
        assert (inst / "image" / d).is_dir(), d
    for d in ("initfs", "build", "run"):
        assert (inst / d).is_dir()
    assert "localhost" in (inst / "image/etc/hosts").read_text()
    assert (inst / "image/etc/passwd").read_text().startswith("root:x:0:0:root:/root:")
    assert (inst / "image/etc/group").read_text().startswith("root:x:0:")
    json.loads((inst / "Occlum.json").read_text())


def test_new_refuses_an_existing_destination(inst: Path) -> None:
    r = occlum("--instance-dir", str(inst.parent), "new", "app")
    assert r.exit_code == 1
    assert r.stderr == f"occlum: error: destination {inst} already exists\n"


def test_init_in_place_and_twice(tmp_path: Path) -> None:
    r = in_dir(tmp_path, "init")
    assert r.exit_code == 0
    assert (tmp_path / "image/bin").is_dir()
    r = in_dir(tmp_path, "init")
    assert r.exit_code == 1
    assert r.stderr == f"occlum: error: {tmp_path} is already an Occlum instance\n"


def test_commands_outside_an_instance(tmp_path: Path) -> None:
    for cmd in (["build"], ["status"], ["run", "/bin/x"]):
        r = in_dir(tmp_path, *cmd)
        assert r.exit_code == 1
        assert r.stderr.startswith(f"occlum: error: not an Occlum instance directory: {tmp_path}")


def test_build_copies_the_image_faithfully(inst: Path) -> None:
    img = inst / "image"
    (img / "bin/prog").write_bytes(b"\x7fELF fake")
    os.chmod(img / "bin/prog", 0o751)
    os.symlink("prog", img / "bin/alias")
    os.symlink("/does/not/exist", img / "bin/dangling")
    os.link(img / "bin/prog", img / "bin/hard")
    (img / "ro").mkdir()
    (img / "ro/f").write_text("x")
    os.chmod(img / "ro", 0o555)
    r = in_dir(inst, "build")
    assert r.exit_code == 0, r.output
    b = inst / "build/image"
    assert (b / "bin/prog").read_bytes() == b"\x7fELF fake"
    assert (b / "bin/prog").stat().st_mode & 0o777 == 0o751
    assert os.readlink(b / "bin/alias") == "prog"
    assert os.readlink(b / "bin/dangling") == "/does/not/exist"
    assert (b / "bin/hard").stat().st_ino != (b / "bin/prog").stat().st_ino
    assert (b / "ro").stat().st_mode & 0o777 == 0o555
    assert (b / "bin/prog").stat().st_mtime_ns == (img / "bin/prog").stat().st_mtime_ns
    built = json.loads((inst / "build/Occlum.json.built").read_text())
    assert built["resource_limits"]["user_space_size"] == "300MB"
    assert (inst / ".__occlum_status").read_text() == "built\n"
    # a second build copies nothing unchanged, and can replace a build with 0555 dirs
    r = in_dir(inst, "build")
    assert r.exit_code == 0
    assert " 0 files copied" in r.output
    (img / "bin/prog").write_bytes(b"\x7fELF changed!")
    r = in_dir(inst, "build")
    assert " 2 files copied" in r.output  # prog and its hard link hard
    assert (b / "bin/prog").read_bytes() == b"\x7fELF changed!"
    r = in_dir(inst, "build", "--force")
    assert " 0 unchanged" in r.output
    os.chmod(img / "ro", 0o755)


def test_failed_build_keeps_the_previous_build(inst: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (inst / "image/bin/good").write_text("v1")
    assert in_dir(inst, "build").exit_code == 0
    (inst / "image/bin/good").write_text("v2!")
    secret = inst / "image/etc/secret"
    secret.write_text("s")
    real_open = builtins.open

    def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(secret):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(layout, "open", fake_open, raising=False)
    r = in_dir(inst, "build")
    assert r.exit_code == 1
    assert r.stderr == (
        "occlum: error: image/etc/secret is not readable: cannot put it in the image "
        "(fix its permissions)\n"
    )
    assert (inst / "build/image/bin/good").read_text() == "v1"
    assert [p.name for p in (inst / "build").iterdir() if p.name.startswith(".")] == []


def test_build_rejects_special_files(inst: Path) -> None:
    os.mkfifo(inst / "image/tmp/fifo")
    r = in_dir(inst, "build")
    assert r.exit_code == 1
    assert "image/tmp/fifo is a fifo or socket" in r.stderr


def test_build_rejects_unsupported_mounts(inst: Path) -> None:
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["mount"].append({"target": "/data", "type": "ext2", "source": "disk.img"})
    (inst / "Occlum.json").write_text(json.dumps(cfg))
    r = in_dir(inst, "build")
    assert r.exit_code == 1
    assert r.stderr == "occlum: error: mount type ext2 at /data is not supported yet\n"


def test_status(inst: Path) -> None:
    r = in_dir(inst, "status")
    assert r.exit_code == 0
    assert "no (run `occlum build`)" in r.output
    in_dir(inst, "build")
    r = in_dir(inst, "status")
    assert "yes, at" in r.output and "changed" not in r.output
    assert "MRENCLAVE" in r.output and "MRSIGNER" in r.output
    assert "running" in r.output
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["entry_points"] = ["/bin", "/opt"]
    (inst / "Occlum.json").write_text(json.dumps(cfg))
    assert "Occlum.json changed since" in in_dir(inst, "status").output
    with Instance.at(inst).running():
        assert f"pid {os.getpid()}" in in_dir(inst, "status").output
    assert Instance.at(inst).running_pids() == []


class FakeKernel:
    def __init__(self, result: int | BaseException = 0) -> None:
        self.specs: list[RunSpec] = []
        self.result = result
        self.pids_during_run: list[int] = []

    def run(self, spec: RunSpec) -> int:
        self.specs.append(spec)
        self.pids_during_run = Instance.at(spec.instance_dir).running_pids()
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    k = FakeKernel()
    monkeypatch.setattr(cli_main, "_import_boot", lambda: SimpleNamespace(run=k.run))
    return k


def test_run_needs_a_build(inst: Path, kernel: FakeKernel) -> None:
    r = in_dir(inst, "run", "/bin/hello")
    assert r.exit_code == 1
    assert r.stderr == "occlum: error: instance not built: run `occlum build` first\n"
    assert kernel.specs == []


def test_run_hands_the_kernel_a_runspec(inst: Path, kernel: FakeKernel) -> None:
    in_dir(inst, "build")
    kernel.result = 42
    r = occlum(
        "--instance-dir",
        str(inst),
        "run",
        "/bin/hello",
        "-l",
        "--strace",
        "x",
        env={"EXAMPLE": "from-host", "OCCLUM_LOG_LEVEL": "info"},
    )
    assert r.exit_code == 42
    (spec,) = kernel.specs
    assert spec.argv == ("/bin/hello", "-l", "--strace", "x")
    assert ("EXAMPLE", "from-host") in spec.env and ("OCCLUM", "yes") in spec.env
    assert spec.log_level == "info"
    assert spec.root_dir == str(inst / "build/image")
    assert kernel.pids_during_run == [os.getpid()]
    assert Instance.at(inst).running_pids() == []
    r = in_dir(inst, "run", "--strace", "/bin/hello")
    assert kernel.specs[-1].log_level == "trace"


def test_run_enforces_entry_points(inst: Path, kernel: FakeKernel) -> None:
    in_dir(inst, "build")
    r = in_dir(inst, "run", "/usr/bin/python3")
    assert r.exit_code == 1
    assert r.stderr == (
        "occlum: error: /usr/bin/python3 is not under any entry point (/bin); "
        "see entry_points in Occlum.json\n"
    )
    assert kernel.specs == []


def test_run_ctrl_c_exits_130_without_traceback(inst: Path, kernel: FakeKernel) -> None:
    in_dir(inst, "build")
    kernel.result = KeyboardInterrupt()
    r = in_dir(inst, "run", "/bin/hello")
    assert r.exit_code == 130
    assert "Traceback" not in r.output


def test_bad_log_level(inst: Path, kernel: FakeKernel) -> None:
    in_dir(inst, "build")
    r = occlum("--instance-dir", str(inst), "run", "/bin/x", env={"OCCLUM_LOG_LEVEL": "loud"})
    assert r.exit_code == 1
    assert r.stderr.startswith("occlum: error: OCCLUM_LOG_LEVEL='loud' is not a log level")


# -- help, version, completion, documentation ---------------------------------------------

REPO = Path(__file__).resolve().parents[2]
COMMANDS_DOCS = REPO / "docs" / "commands"


def every_command() -> list[tuple[str, click.Command]]:
    """(name, command) of the group, each command registered on it, and copy_bom."""
    return [("occlum", cli), *sorted(cli.commands.items()), ("copy_bom", copy_bom_cli)]


def help_of(name: str) -> Result:
    runner = CliRunner()
    if name == "occlum":
        return runner.invoke(cli, ["--help"])
    if name == "copy_bom":
        return runner.invoke(copy_bom_cli, ["--help"])
    return runner.invoke(cli, [name, "--help"])


def test_every_help_shows_an_example() -> None:
    names = [name for name, _ in every_command()]
    assert {"new", "build", "run", "start", "exec", "doctor", "completion"} <= set(names)
    for name in names:
        r = help_of(name)
        assert r.exit_code == 0, (name, r.output)
        assert "Example" in r.output, name


def test_the_command_list_is_not_cut_short_at_80_columns() -> None:
    r = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    commands = r.output.split("Commands:\n", 1)[1]
    assert "..." not in commands
    assert all(len(line) <= 80 for line in commands.splitlines())


def console_script(module: str, *args: str, env: dict[str, str] | None = None) -> Any:
    code = f"import sys; from {module} import main; sys.argv[0] = 'x'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_version() -> None:
    for flag in ("--version", "-V"):
        assert occlum(flag).output == f"occlum, version {__version__}\n"
        r = CliRunner().invoke(copy_bom_cli, [flag])
        assert r.exit_code == 0 and r.output == f"copy_bom, version {__version__}\n"
    p = console_script("occlum.cli.entry", "--version")
    assert p.returncode == 0 and p.stdout == f"occlum, version {__version__}\n"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shell_script(shell: str) -> None:
    r = occlum("completion", shell)
    assert r.exit_code == 0
    assert "_OCCLUM_COMPLETE=" in r.output and "_COPY_BOM_COMPLETE" not in r.output
    r = occlum("completion", shell, "copy_bom")
    assert r.exit_code == 0
    assert "_COPY_BOM_COMPLETE=" in r.output and "_OCCLUM_COMPLETE" not in r.output
    assert occlum("completion", "tcsh").exit_code == 2


def completions(module: str, var: str, words: str, *args: str) -> list[str]:
    env = {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1), var: "bash_complete"}
    p = console_script(module, *args, env=env)
    assert p.returncode == 0, p.stderr
    return [line.split(",", 1)[1] for line in p.stdout.splitlines()]


def test_completion_requests_reach_click_through_the_console_script() -> None:
    assert completions("occlum.cli.entry", "_OCCLUM_COMPLETE", "occlum st") == [
        "start",
        "status",
        "stop",
    ]
    assert completions("occlum.cli.entry", "_OCCLUM_COMPLETE", "occlum print m") == [
        "mrenclave",
        "mrsigner",
    ]
    # words on the command line that look like a plain exec do not take the fast path
    got = completions("occlum.cli.entry", "_OCCLUM_COMPLETE", "occlum st", "exec", "/bin/true")
    assert got == ["start", "status", "stop"]
    got = completions("occlum.cli.copy_bom", "_COPY_BOM_COMPLETE", "copy_bom --d")
    assert got == ["--dry-run"]


def options_of(command: click.Command) -> list[str]:
    """Every option string of ``command`` but the help option's."""
    return [
        opt
        for p in command.params
        if isinstance(p, click.Option) and p.name != "help"
        for opt in (*p.opts, *p.secondary_opts)
    ]


def command_docs() -> dict[str, Path]:
    """Command name -> its page, from the index docs/commands/README.md."""
    index = (COMMANDS_DOCS / "README.md").read_text()
    pages: dict[str, Path] = {}
    for m in re.finditer(r"\[`(occlum(?: [a-z-]+)?|copy_bom)`\]\(([^)#]+)(#[^)]*)?\)", index):
        name = m.group(1).removeprefix("occlum ") if m.group(1) != "occlum" else "occlum"
        pages[name] = (COMMANDS_DOCS / m.group(2)).resolve()
    return pages


def test_every_command_has_a_page_naming_each_option() -> None:
    pages = command_docs()
    for name, command in every_command():
        assert name in pages, f"{name} is not in docs/commands/README.md"
        page = pages[name]
        assert page.is_file(), page
        if page.parent == COMMANDS_DOCS:
            assert page.name == f"{name}.md", (name, page)
        text = page.read_text()
        if page.parent == COMMANDS_DOCS:
            for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES"):
                assert f"## {section}" in text, (page.name, section)
            assert "## EXIT STATUS" in text and "## SEE ALSO" in text, page.name
        for opt in options_of(command):
            assert f"`{opt}" in text, f"{page.name} does not describe {name} {opt}"
    own = {p.name for p in COMMANDS_DOCS.glob("*.md")} - {"README.md"}
    assert own == {p.name for p in pages.values() if p.parent == COMMANDS_DOCS}


# -- tables and progress ------------------------------------------------------------------


def lines_fit(text: str, width: int) -> bool:
    return all(len(line) <= width for line in text.splitlines())


def test_status_fits_80_columns(inst: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import occlum.instance.client as client
    import occlum.instance.wire as wire

    assert in_dir(inst, "build").exit_code == 0
    monkeypatch.setattr(wire, "lock_holder", lambda _run_dir: 4242)
    status = {"pid": 4242, "started_at": 0.0, "processes": 1, "execs": 1, "stopping": False}
    monkeypatch.setattr(client, "request", lambda *_a, **_k: {"status": status})
    mrenclave = in_dir(inst, "print", "mrenclave").output.strip()
    r = occlum("--instance-dir", str(inst), "status", env={"COLUMNS": "80"})
    assert r.exit_code == 0
    assert lines_fit(r.output, 80), r.output
    assert mrenclave in r.output  # on one line
    assert "server pid 4242" in r.output and "1 process," in r.output
    wide = occlum("--instance-dir", str(inst), "status", env={"COLUMNS": "100"}).output
    assert "│ MRENCLAVE" in wide and lines_fit(wide, 100)


def test_ps_fits_80_columns(inst: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import occlum.instance.client as client

    command = "/bin/sh -c " + " ".join(f"word{i}" for i in range(30))
    row = {"pid": 3, "ppid": 2, "state": "S", "threads": 1, "rss_kib": 1536, "command": command}
    monkeypatch.setattr(client, "request", lambda *_a, **_k: {"ps": [row]})
    r = occlum("--instance-dir", str(inst), "ps", env={"COLUMNS": "80"})
    assert r.exit_code == 0
    assert lines_fit(r.output, 80), r.output
    for word in command.split():
        assert word in r.output
    assert "1.5M" in r.output


def test_run_summary_fits_80_columns() -> None:
    from occlum.cli.doctor import print_summary
    from occlum.kernel.stats import CallCount

    rows = [
        CallCount("newfstatat", "full", "", calls=42, errors=3, ns=6_690_000),
        CallCount("getxattr", "partial", "", calls=22, errors=22, ns=521_800),
    ]
    libos = SimpleNamespace(stats=SimpleNamespace(made=lambda: rows))
    out = Console(file=io.StringIO(), width=80)
    argv = ("/bin/sh", "-c", "cat /etc/hosts | while read l; do echo $l; done; ls -l /proc/self")
    print_summary(out, libos, argv)  # type: ignore[arg-type]
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert lines_fit(text, 80), text
    assert "newfstatat" in text and "6.69 ms" in text and "partial" in text


def test_progress_only_on_a_terminal_and_for_large_copies() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    pipe = Console(file=io.StringIO(), force_terminal=False)
    bar = RichProgress("copying", min_bytes=1000, min_files=10)
    bar.start(999, 9, out=terminal)
    assert bar.progress is None
    bar.start(1000, 1, out=pipe)
    assert bar.progress is None
    for total_bytes, total_files in ((1000, 1), (10, 10)):
        bar = RichProgress("copying", min_bytes=1000, min_files=10)
        bar.start(total_bytes, total_files, out=terminal)
        assert bar.progress is not None
        bar.advance(total_bytes)
        bar.stop()
        assert bar.progress.tasks[0].completed == total_bytes
    assert "copying" in terminal.file.getvalue()  # type: ignore[attr-defined]


def test_copy_bom_draws_a_bar_for_many_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import occlum.cli.copy_bom as copy_bom_module

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_text("x" * 100)
    bom = tmp_path / "app.yaml"
    bom.write_text(f"targets:\n  - target: /data\n    copy:\n      - dirs: [{src}/]\n")
    args = ["-f", str(bom), "--root", str(tmp_path / "image")]
    env = {"TTY_COMPATIBLE": "1"}  # stderr counts as a terminal
    r = CliRunner().invoke(copy_bom_cli, args, env=env)
    assert r.exit_code == 0, r.output
    assert "copying" not in r.stderr  # 3 small files: no bar
    monkeypatch.setattr(copy_bom_module, "PROGRESS_MIN_FILES", 3)
    r = CliRunner().invoke(copy_bom_cli, [*args], env=env)
    assert r.exit_code == 0, r.output
    assert "copying" in r.stderr
    assert "copy_bom: 0 files copied" in r.stderr  # unchanged the second time, still shown
    assert (tmp_path / "image/data/f2").read_text() == "x" * 100


def test_doctor_refuses_a_user_space_size_past_the_address_space(inst: Path) -> None:
    # past 2**63 bytes setrlimit itself fails: the program would not start at all
    r = in_dir(inst, "doctor", "--user-space-size", "9000000TB", "/bin/true")
    assert r.exit_code == 2
    assert (
        "'9000000TB' is more than a process can address on this machine (at most \"128TB\")"
        in r.stderr
    )
