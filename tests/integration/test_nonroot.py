"""Without root the LibOS runs in a user namespace of its own and still confines the program."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root  # root is needed to become another user for the test

NOBODY = 65534

# Run in a fresh interpreter that drops to an unprivileged user before booting the LibOS;
# everything is imported first, since the interpreter's own files may not be readable by it.
_DRIVER = """
import os, sys
import occlum.boot, occlum.kernel.libos, occlum.kernel.procinfo, occlum.kernel.strace
import occlum.syscalls.table, occlum.syscalls.exec, occlum.syscalls.fs, occlum.syscalls.info
from occlum.kernel.spec import MountSpec, RunSpec
root, share, *argv = sys.argv[1:]
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
os.chdir("/")
spec = RunSpec(instance_dir=root, root_dir=root, argv=tuple(argv), env=(("PATH", "/bin"),),
               mounts=(MountSpec("/host", "hostfs", share),), log_level="error")
sys.exit(occlum.boot.run(spec))
"""


@pytest.fixture()
def open_tmp() -> Iterator[Path]:
    """A scratch directory the unprivileged user can reach (pytest's own is private)."""
    path = Path(tempfile.mkdtemp(prefix="occlum-nonroot-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unprivileged_user_runs_programs_confined(open_tmp: Path) -> None:
    tmp_path = open_tmp
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    libos.place_with_dependencies(
        inst.image,
        {
            "/bin/sh": Path("/bin/dash"),
            "/bin/ls": Path("/bin/ls"),
            "/bin/cat": Path("/bin/cat"),
            "/bin/root_privileges": libos.compile_c(
                libos.C_DIR / "root_privileges.c", tmp_path / "root_privileges"
            ),
        },
    )
    inst.build()
    share = tmp_path / "share"
    share.mkdir()
    (share / "hello.txt").write_text("from the host\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    for p in (tmp_path, inst.path, share):
        os.chmod(p, 0o755)
    os.chmod(share, 0o777)
    subprocess.run(["chmod", "-R", "a+rX", str(inst.path / "build")], check=True)
    script = (
        "ls /; cat /host/hello.txt; echo made > /host/out.txt; cd /tmp && echo x > f && cat f; "
        f"cat /host/../secret.txt 2>/dev/null || echo refused; cat {secret} 2>/dev/null || echo refused"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _DRIVER,
            str(inst.path / "build" / "image"),
            str(share),
            "/bin/sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "bin" in lines and "tmp" in lines
    assert "from the host" in lines and "x" in lines
    assert lines[-2:] == ["refused", "refused"]
    assert (share / "out.txt").read_text() == "made\n"
    assert (share / "out.txt").stat().st_uid == NOBODY
    assert "Traceback" not in proc.stderr

    # root inside sets its groups though the user namespace denies setgroups (LibOS state);
    # raising a priority goes no further than the supervisor's own rights
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(inst.path / "build" / "image"), str(share),
         "/bin/root_privileges", "/tmp/rp"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout.splitlines()
    assert "groups: 3 5 5 3000000000" in out, proc.stdout
    assert "child sets: 42" in out and "parent keeps: 3 5 5 3000000000" in out
    assert "after initgroups: 1234" in out
    assert any(line.startswith("nice(-5): EPERM") for line in out), proc.stdout  # glibc's errno
    assert "setpriority lower nice: setpriority(PRIO_PROCESS, 0, base - 7) failed with EACCES" in (
        proc.stdout
    )


def test_unprivileged_user_has_the_hosts_network_and_private_abstract_names(
    open_tmp: Path,
) -> None:
    """Without root, too, programs live in a network namespace of the instance's own (made in
    its user namespace): TCP and UDP sockets, made by the unprivileged supervisor, are on the
    host's loopback, and abstract Unix names work between programs and read back as bound."""
    tmp_path = open_tmp
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    prog = libos.compile_c(libos.C_DIR / "peer_address.c", tmp_path / "peer_address")
    libos.place_with_dependencies(inst.image, {"/bin/peer_address": prog})
    inst.build()
    for p in (tmp_path, inst.path):
        os.chmod(p, 0o755)
    subprocess.run(["chmod", "-R", "a+rX", str(inst.path / "build")], check=True)
    native = subprocess.run(
        [str(prog), str(tmp_path / "native-scratch")], capture_output=True, text=True, check=False
    )
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(inst.path / "build" / "image"), str(tmp_path),
         "/bin/peer_address", "/tmp/pa"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == native.stdout and proc.stdout.endswith("PASS\n"), proc.stdout
