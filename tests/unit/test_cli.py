"""The ``occlum`` command line: new, init, build, status, run (with a stand-in kernel)."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

import occlum.cli.main as cli_main
import occlum.instance.layout as layout
from occlum import __version__
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


def test_version_and_help() -> None:
    r = occlum("--version")
    assert r.exit_code == 0 and __version__ in r.output
    for cmd in ("new", "init", "build", "run", "status"):
        r = occlum(cmd, "--help")
        assert r.exit_code == 0
        assert "Example:" in r.output, cmd
    assert "Example:" in occlum("--help").output


def test_new_creates_an_occlum_instance(inst: Path) -> None:
    assert (inst / "Occlum.json").is_file()
    assert (inst / ".__occlum_status").read_text() == "initialized\n"
    for d in IMAGE_DIRS:
        assert (inst / "image" / d).is_dir(), d
    for d in ("initfs", "build", "run"):
        assert (inst / d).is_dir()
    assert "localhost" in (inst / "image/etc/hosts").read_text()
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
