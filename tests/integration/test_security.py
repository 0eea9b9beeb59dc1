"""Escape attempts inside the LibOS: each probe must be refused (or stay contained), the LibOS
must survive, and the same probes must detect the escape natively (so they are not vacuous)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Iterator

import pytest

import libos
from libos import CBuild, HostShare, Instance

pytestmark = pytest.mark.needs_root

SECURITY = libos.security_tests()
# Probes safe to run on the bare host, where they must report escapes: proof that they look.
# (tiocsti types only into a pseudo-terminal it makes for itself.)
NATIVE_CONTROLS = (
    "hostfs_dotdot", "dirfd_dotdot", "hostfs_symlink", "proc_root", "kill_host", "abstract_host",
    "hostfs_setid", "exec_direct", "tiocsti", "netlink_diag",
)  # fmt: skip
ACCEPTED = {"refused", "contained"}


@pytest.fixture(scope="module", autouse=True)
def host_abstract_sockets() -> Iterator[None]:
    """The host's abstract sockets abstract_host.c aims at (named after this process)."""
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(f"\0occlum-sec-dgram-{os.getpid()}")
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(f"\0occlum-sec-stream-{os.getpid()}")
    stream.listen(16)
    try:
        yield
    finally:
        dgram.close()
        stream.close()


def _args(mount: str, share: HostShare) -> list[str]:
    return [mount, str(share.secret), str(os.getpid())]


@pytest.mark.parametrize("name", SECURITY)
def test_refused_inside_libos(name: str, c_instance: Instance, host_share: HostShare) -> None:
    res = c_instance.run([f"/bin/sec-{name}", *_args("/host", host_share)])
    assert "Traceback" not in res.stderr, res.describe()
    lines = libos.parse_probe_lines(res.stdout)
    assert lines, f"{name} printed no probe results:\n{res.describe()}"
    bad = [f"{p}: {v} {d}" for p, v, d in lines if v not in ACCEPTED]
    assert not bad, (
        f"{name}: not refused inside the LibOS:\n" + "\n".join(bad) + "\n" + res.describe()
    )
    assert res.stdout.rstrip().endswith("ALL REFUSED"), res.describe()
    assert res.code == 0, res.describe()
    # the host secret never reaches the application's output
    assert "HOST-SECRET" not in res.stdout


@pytest.mark.parametrize("name", NATIVE_CONTROLS)
def test_probe_detects_escape_natively(name: str, c_build: CBuild, host_share: HostShare) -> None:
    res = libos.run_native(
        [str(c_build.host(f"/bin/sec-{name}")), *_args(str(host_share.share), host_share)]
    )
    verdicts = {v for _, v, _ in libos.parse_probe_lines(res.stdout)}
    assert "ESCAPED" in verdicts, res.describe()
    assert res.code == 1


def test_libos_alive_after_probes(c_instance: Instance) -> None:
    res = c_instance.run(["/bin/uname", "/tmp/alive"])
    assert res.code == 0, res.describe()
    assert res.stdout.rstrip().endswith("PASS")


def test_hostfs_still_serves_its_own_files(c_instance: Instance, host_share: HostShare) -> None:
    """The refusals above are not a hostfs that refuses everything."""
    res = c_instance.run(["/bin/sec-hostfs_dotdot", *_args("/host", host_share)])
    assert "chdir to mount: refused" not in res.stdout, res.describe()
    res = c_instance.run(["/bin/sec-dirfd_dotdot", *_args("/host", host_share)])
    assert "open mount/sub:" not in res.stdout, res.describe()


def test_hostfs_files_stay_without_set_id_bits_and_foreign_owners(
    c_instance: Instance, host_share: HostShare
) -> None:
    """What hostfs_setid made, seen from the host: no set-id bit, no owner but the LibOS's."""
    res = c_instance.run(["/bin/sec-hostfs_setid", *_args("/host", host_share)])
    assert res.code == 0, res.describe()
    made = sorted((host_share.share / "setid-probe").iterdir())
    assert len(made) == 9, made
    for path in made:
        st = path.lstat()
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), (path, oct(st.st_mode))
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()), path
    lines = dict((p, v) for p, v, _ in libos.parse_probe_lines(res.stdout))
    # chmod succeeds without the bits; giving a file away is refused
    assert lines["chmod 04755"] == "contained"
    assert lines["chown to another uid"] == "refused"


def test_host_descriptors_are_not_inherited(
    c_instance: Instance, c_build: CBuild, host_share: HostShare
) -> None:
    """A host file the caller of `occlum run` left open (`exec 7</secret`) does not reach the
    program: natively the probe reads the secret through it, inside it finds no descriptor."""
    fd = os.open(host_share.secret, os.O_RDONLY)
    try:
        argv = _args("/host", host_share)
        probe = str(c_build.host("/bin/sec-inherited_fd"))
        native = subprocess.run(
            [probe, *argv], pass_fds=(fd,), capture_output=True, text=True, timeout=60
        )
        assert "read the host secret" in native.stdout and native.returncode == 1, native
        inside = subprocess.run(
            [*libos._tool("occlum"), "run", "/bin/sec-inherited_fd", *argv],
            cwd=c_instance.path, pass_fds=(fd,), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert inside.stdout.rstrip().endswith("ALL REFUSED"), inside
        assert inside.returncode == 0, inside
    finally:
        os.close(fd)
