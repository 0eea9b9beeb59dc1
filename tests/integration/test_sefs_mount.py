"""SEFS mounts: encrypted at rest, persistent across runs, fsync durable, tampering refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")
DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"
SECRET = "PLAINTEXT-MARKER-7f3a"


def occlum(inst: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OCCLUM, *args], cwd=inst, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip


@pytest.fixture()
def inst(tmp_path: Path) -> Iterator[Path]:
    i = Instance.new(tmp_path / "instance")
    i.configure()
    cfg = json.loads(i.config_path.read_text())
    cfg["mount"] += [
        {"target": "/data", "type": "sefs", "source": "./run/mount/data"},
        {"target": "/scratch", "type": "sefs", "options": {"temporary": True}},
    ]
    i.config_path.write_text(json.dumps(cfg))
    for d in ("data", "scratch"):
        (i.image / d).mkdir()
    binaries = {
        "/bin/sh": Path("/bin/dash"),
        "/bin/cat": Path("/bin/cat"),
        "/bin/ls": Path("/bin/ls"),
        "/bin/mkdir": Path("/bin/mkdir"),
        "/bin/stat": Path("/usr/bin/stat"),
    }
    for prog in ("fsync_then_wait", "msync_then_wait", "close_then_wait"):
        binaries[f"/bin/{prog}"] = libos.compile_c(DIAG / f"{prog}.c", tmp_path / prog)
    libos.place_with_dependencies(i.image, binaries)
    i.build()
    yield i.path


def _host_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_persistent_encrypted_and_temporary(inst: Path) -> None:
    script = f"echo {SECRET} > /data/{SECRET}.txt && mkdir /data/dir && echo t > /scratch/t && ls /scratch"
    res = occlum(inst, "run", "/bin/sh", "-c", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "t\n"
    stored = inst / "run" / "mount" / "data"
    assert any(stored.iterdir())
    everything = _host_bytes(inst / "run")
    assert SECRET.encode() not in everything  # neither the contents nor the file name
    res = occlum(inst, "run", "/bin/sh", "-c", f"cat /data/{SECRET}.txt; ls /data; ls /scratch")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{SECRET}\n{SECRET}.txt\ndir\n"  # /scratch starts empty again


def test_tmp_reports_the_file_system_the_configuration_names(inst: Path) -> None:
    # Occlum.json mounts /tmp as ramfs; /dev/shm is the LibOS's own tmpfs
    res = occlum(inst, "run", "/bin/stat", "-f", "-c", "%T", "/tmp", "/dev/shm")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "ramfs\ntmpfs\n"
    res = occlum(inst, "run", "/bin/cat", "/proc/mounts")
    assert "ramfs /tmp ramfs rw 0 0\n" in res.stdout, res.stdout


def test_tampered_object_is_refused(inst: Path) -> None:
    assert occlum(inst, "run", "/bin/sh", "-c", "echo hello > /data/f").returncode == 0
    stored = inst / "run" / "mount" / "data"
    for obj in stored.iterdir():
        if obj.name != "superblock":
            data = bytearray(obj.read_bytes())
            data[len(data) // 2] ^= 1
            obj.write_bytes(bytes(data))
    res = occlum(inst, "run", "/bin/sh", "-c", "cat /data/f; echo status $?")
    assert "hello" not in res.stdout
    assert "Traceback" not in res.stderr
    assert res.returncode != 0 or "status 1" in res.stdout


def _kill_after(inst: Path, argv: list[str], line: bytes) -> None:
    """Run ``argv`` in the LibOS until it prints ``line``, then SIGKILL the supervisor: no
    exit commit, no periodic write-back (its interval is an hour)."""
    env = {**os.environ, "OCCLUM_LOG_LEVEL": "off", "OCCLUM_WRITEBACK_SECONDS": "3600"}
    proc = subprocess.Popen([OCCLUM, "run", *argv], cwd=inst, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == line
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_fsync_survives_a_killed_libos(inst: Path) -> None:
    _kill_after(inst, ["/bin/fsync_then_wait", "/data/durable", "kept"], b"synced\n")
    res = occlum(inst, "run", "/bin/sh", "-c", "cat /data/durable; echo; ls /data")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "kept"
    assert "durable.unsynced" not in res.stdout  # written after the last fsync: gone


def test_msync_survives_a_killed_libos(inst: Path) -> None:
    argv = ["/bin/msync_then_wait", "/data/mapped", "stored-then-msynced"]
    _kill_after(inst, argv, b"synced\n")
    res = occlum(inst, "run", "/bin/cat", "/data/mapped")
    assert res.returncode == 0, res.stderr
    data = res.stdout.encode()
    assert len(data) == 8192 and data.startswith(b"stored-then-msynced\0")
    assert b"late" not in data  # stored after the last msync


def test_the_last_close_commits(inst: Path) -> None:
    _kill_after(inst, ["/bin/close_then_wait", "/data/closed", "written-then-closed"], b"closed\n")
    res = occlum(inst, "run", "/bin/cat", "/data/closed")
    assert res.returncode == 0 and res.stdout == "written-then-closed", res.stderr


def test_missing_platform_key_is_named(inst: Path, tmp_path: Path) -> None:
    key = tmp_path / "platform.key"
    env = {**os.environ, "OCCLUM_PLATFORM_KEY": str(key), "OCCLUM_LOG_LEVEL": "error"}
    first = subprocess.run(
        [OCCLUM, "run", "/bin/sh", "-c", "echo kept > /data/f"], cwd=inst, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    key.unlink()
    res = subprocess.run(
        [OCCLUM, "run", "/bin/cat", "/data/f"], cwd=inst, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "platform key" in lines[0] and "missing" in lines[0], res.stderr
    assert not key.exists()  # nothing was created that could never open the volume


def test_mount_syscalls_inside(inst: Path, tmp_path: Path) -> None:
    exe = libos.compile_c(DIAG / "mounter.c", tmp_path / "mounter")
    shutil.copy(exe, inst / "image" / "bin" / "mounter")
    assert occlum(inst, "build").returncode == 0
    res = occlum(inst, "run", "/bin/mounter")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "mount ramfs: ok",
        "/tmp/mnt/x: in ramfs",
        "umount: ok",
        "/tmp/mnt/x: No such file or directory",
        "mount sefs vol1: ok",
        "umount: ok",
        "mount hostfs: Operation not permitted",
        "mount sefs outside run/mount: Operation not permitted",
        "remount: Invalid argument",
        "unknown type: No such device",
        "umount /: Device or resource busy",
        "umount non-mount: Invalid argument",
    ]
    again = occlum(inst, "run", "/bin/mounter", "again")
    assert again.stdout.splitlines() == [
        "mount sefs vol1 again: ok",
        "/tmp/mnt/kept: in sefs",
        "umount: ok",
    ]
    assert b"in sefs" not in _host_bytes(inst / "run")


def _killed_after(inst: Path, env: dict[str, str], *argv: str) -> None:
    proc = subprocess.Popen([OCCLUM, "run", *argv], cwd=inst, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"waited\n"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_periodic_write_back(inst: Path, tmp_path: Path) -> None:
    exe = libos.compile_c(DIAG / "write_no_fsync.c", tmp_path / "write_no_fsync")
    shutil.copy(exe, inst / "image" / "bin" / "write_no_fsync")
    assert occlum(inst, "build").returncode == 0
    env = {**os.environ, "OCCLUM_LOG_LEVEL": "off", "OCCLUM_WRITEBACK_SECONDS": "0.3"}
    _killed_after(inst, env, "/bin/write_no_fsync", "/data/wb", "1500")
    res = occlum(inst, "run", "/bin/cat", "/data/wb")
    assert res.stdout == "unsynced but written back\n", res.stderr
    # without a write-back in time, what was never synced is gone after a crash
    env["OCCLUM_WRITEBACK_SECONDS"] = "600"
    _killed_after(inst, env, "/bin/write_no_fsync", "/data/lost", "500")
    assert occlum(inst, "run", "/bin/cat", "/data/lost").returncode != 0
