"""``occlum mount``: an instance's SEFS volumes read and written on the host through FUSE."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance
from occlum.enclave.keys import load_platform_key

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")

if not os.path.exists("/dev/fuse"):
    pytest.skip("no /dev/fuse", allow_module_level=True)
pytest.importorskip("pyfuse3")


def occlum(
    inst: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OCCLUM, *args], cwd=inst, capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "error", **(env or {})},
    )  # fmt: skip


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("occlum: error: "), res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("mount")
    i = Instance.new(tmp / "instance")
    i.configure()
    cfg = json.loads(i.config_path.read_text())
    cfg["mount"] += [{"target": "/data", "type": "sefs", "source": "./run/mount/data"}]
    i.config_path.write_text(json.dumps(cfg))
    (i.image / "data").mkdir()
    binaries = {
        "/bin/sh": Path("/bin/dash"),
        "/bin/cat": Path("/bin/cat"),
        "/bin/ls": Path("/bin/ls"),
        "/bin/mkdir": Path("/bin/mkdir"),
        "/bin/stat": Path("/usr/bin/stat"),
        "/bin/readlink": Path("/usr/bin/readlink"),
    }
    libos.place_with_dependencies(i.image, binaries)
    i.build()
    yield i.path


@pytest.fixture()
def mnt(inst: Path, tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "mnt"
    d.mkdir()
    yield d
    if os.path.ismount(d):  # a failed test must not leave the volume served
        subprocess.run(["fusermount3", "-u", str(d)], check=False)
        occlum(inst, "umount", str(d))


def mount(inst: Path, mnt: Path, *opts: str) -> None:
    res = occlum(inst, "mount", *opts, str(mnt))
    assert res.returncode == 0, res.stderr
    assert os.path.ismount(mnt)


def umount(inst: Path, mnt: Path) -> None:
    res = occlum(inst, "umount", str(mnt))
    assert res.returncode == 0, res.stderr
    assert not os.path.ismount(mnt)


def test_written_inside_read_on_host_and_back(inst: Path, mnt: Path) -> None:
    res = occlum(
        inst,
        "run",
        "/bin/sh",
        "-c",
        "mkdir -p /work && echo from-inside > /work/a && echo d > /data/d",
    )
    assert res.returncode == 0, res.stderr
    mount(inst, mnt)
    assert (mnt / "work" / "a").read_text() == "from-inside\n"
    # every kind of change, made by host tools through the mount
    (mnt / "work" / "new").mkdir()
    (mnt / "work" / "new" / "b").write_text("from-host\n")
    (mnt / "work" / "new" / "b").chmod(0o600)
    (mnt / "work" / "tmp").write_text("renamed\n")
    os.rename(mnt / "work" / "tmp", mnt / "work" / "renamed")
    (mnt / "work" / "gone").write_text("x")
    os.unlink(mnt / "work" / "gone")
    os.symlink("new/b", mnt / "work" / "link")
    # a listing holds "." and ".." as on Linux, ".." naming the parent, after a move too
    (mnt / "moved").mkdir()
    (mnt / "moved" / "sub").mkdir()
    os.rename(mnt / "moved" / "sub", mnt / "work" / "sub")
    listing = subprocess.run(
        ["ls", "-ai", str(mnt / "work" / "sub")], capture_output=True, text=True
    )
    inos = {line.split()[1]: int(line.split()[0]) for line in listing.stdout.splitlines()}
    assert inos == {".": os.stat(mnt / "work" / "sub").st_ino, "..": os.stat(mnt / "work").st_ino}
    os.rmdir(mnt / "work" / "sub")
    os.rmdir(mnt / "moved")
    with open(mnt / "work" / "a", "r+") as f:
        f.seek(5)
        f.write("X")
    assert (mnt / "work" / "a").read_text() == "from-Xnside\n"
    # a run is refused while the volume is served
    err = one_line_error(occlum(inst, "run", "/bin/cat", "/work/a"))
    assert "occlum umount" in err
    umount(inst, mnt)
    script = (
        "cat /work/new/b /work/renamed /work/a; stat -c %a /work/new/b; "
        "readlink /work/link; cat /work/link; ls /work"
    )
    res = occlum(inst, "run", "/bin/sh", "-c", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (
        "from-host\nrenamed\nfrom-Xnside\n600\nnew/b\nfrom-host\na\nlink\nnew\nrenamed\n"
    )
    # a named sefs mount of Occlum.json
    mount(inst, mnt, "--volume", "/data")
    assert (mnt / "d").read_text() == "d\n"
    (mnt / "e").write_text("e\n")
    umount(inst, mnt)
    res = occlum(inst, "run", "/bin/cat", "/data/e")
    assert res.returncode == 0 and res.stdout == "e\n", res.stderr


def test_refused_while_started_and_twice(inst: Path, mnt: Path) -> None:
    res = occlum(inst, "start")
    assert res.returncode == 0, res.stderr
    try:
        err = one_line_error(occlum(inst, "mount", str(mnt)))
        assert "started" in err
        assert not os.path.ismount(mnt)
    finally:
        assert occlum(inst, "stop").returncode == 0
    mount(inst, mnt)
    other = mnt.parent / "other"
    other.mkdir()
    err = one_line_error(occlum(inst, "mount", str(other)))
    assert "already mounted" in err
    err = one_line_error(occlum(inst, "start"))
    assert "occlum umount" in err
    status = occlum(inst, "status", env={"COLUMNS": "200"})
    assert f"/ at {os.path.realpath(mnt)} (occlum mount, pid" in status.stdout, status.stdout
    umount(inst, mnt)


def test_bad_instance_and_wrong_key(inst: Path, mnt: Path, tmp_path: Path) -> None:
    err = one_line_error(occlum(tmp_path, "mount", str(mnt)))
    assert "not an Occlum instance" in err
    err = one_line_error(occlum(inst, "mount", "--volume", "/nowhere", str(mnt)))
    assert "no persistent SEFS volume is mounted at /nowhere" in err
    assert occlum(inst, "run", "/bin/sh", "-c", "echo k > /data/k").returncode == 0
    # the platform key missing: said so
    other_key = tmp_path / "other" / "platform.key"
    env = {"OCCLUM_PLATFORM_KEY": str(other_key)}
    err = one_line_error(occlum(inst, "mount", "--volume", "/data", str(mnt), env=env))
    assert "which is missing" in err
    # another platform key derives other volume keys: the volume does not open with them
    load_platform_key(other_key)
    err = one_line_error(occlum(inst, "mount", "--volume", "/data", str(mnt), env=env))
    assert "wrong key" in err
    assert not os.path.ismount(mnt)


def test_tampered_object_gives_eio(inst: Path, mnt: Path) -> None:
    stored = inst / "run" / "mount" / "__ROOT"
    before = set(os.listdir(stored)) if stored.exists() else set()  # a mount formats it
    mount(inst, mnt)
    big = os.urandom(1 << 20)
    (mnt / "big").write_bytes(big)
    (mnt / "small").write_text("untouched\n")
    umount(inst, mnt)
    # the object that holds big's contents: the largest of those the commit added
    victim = max(
        (p for p in stored.iterdir() if p.name not in before and p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    good = victim.read_bytes()
    assert victim.stat().st_size >= 1 << 20
    data = bytearray(good)
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    try:
        mount(inst, mnt)
        with pytest.raises(OSError) as exc:
            (mnt / "big").read_bytes()
        assert exc.value.errno == 5  # EIO: no byte of the tampered file is served
        assert (mnt / "small").read_text() == "untouched\n"  # the rest stays usable
        umount(inst, mnt)
    finally:
        victim.write_bytes(good)
    mount(inst, mnt)
    assert (mnt / "big").read_bytes() == big
    umount(inst, mnt)


def test_sigterm_to_the_server_unmounts_and_commits(inst: Path, mnt: Path) -> None:
    mount(inst, mnt)
    (mnt / "by-signal").write_text("committed\n")
    (pid,) = (int(p.name) for p in (inst / "run" / "mounts").iterdir() if p.name.isdigit())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while (inst / "run" / "mounts" / str(pid)).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.ismount(mnt)
    res = occlum(inst, "run", "/bin/cat", "/by-signal")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "committed\n"


def test_refused_while_running(inst: Path, mnt: Path) -> None:
    run = subprocess.Popen(
        [OCCLUM, "run", "/bin/sh", "-c", "read line"], cwd=inst, stdin=subprocess.PIPE,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip
    assert run.stdin is not None
    try:
        deadline = time.monotonic() + 60
        pids = inst / "run" / "pids"
        while not (pids.is_dir() and any(pids.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.05)
        err = one_line_error(occlum(inst, "mount", str(mnt)))
        assert "running" in err
        assert not os.path.ismount(mnt)
    finally:
        run.stdin.write(b"go\n")
        run.stdin.close()
        assert run.wait(timeout=60) == 0


def test_the_server_imports_nothing_from_the_callers_directory(
    inst: Path, mnt: Path, tmp_path: Path
) -> None:
    # the server starts in the caller's working directory; a file there named like a module
    # it imports must not be what it imports
    caller = tmp_path / "caller"
    caller.mkdir()
    (caller / "click.py").write_text("raise SystemExit('the caller directory')\n")
    res = subprocess.run(
        [OCCLUM, "--instance-dir", str(inst), "mount", str(mnt)], cwd=caller,
        capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert os.path.ismount(mnt)
    umount(inst, mnt)
