"""The zygote's wire protocol, its socket directory, its staleness fingerprint, the files it
keeps, and imagefs's use of kept files (no LibOS instance is started)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from occlum.abi.errors import SyscallError
from occlum.cli import zygote_wire as wire
from occlum.cli.fastrun import is_run
from occlum.cli.zygote import Zygote, fingerprint
from occlum.fs import imagefs
from occlum.fs.imagefs import ImageFs
from occlum.instance.image_builder import build_image

SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


def test_a_request_round_trips_any_bytes() -> None:
    argv = [b"run", b"/bin/echo", b"\xff\xfe not utf-8", b""]
    env = [b"A=1", b"B=", b"C=x=y", b"D=\x80\x81"]
    data = wire.encode_request(argv, env, 0o027)
    assert int.from_bytes(data[:4], "little") == len(data) - 4
    ident, got_argv, got_env, umask = wire.decode_request(data[4:])
    assert ident == wire.identity()
    assert got_argv == argv
    assert got_env == {b"A": b"1", b"B": b"", b"C": b"x=y", b"D": b"\x80\x81"}
    assert umask == 0o027


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"other-tag\0id\0022\0000",
        b"occlum-run-1\0id\0999\0000",  # not octal
        b"occlum-run-1\0id\0" + b"7777\x000",  # beyond 0o777
        b"occlum-run-1\0id\0022\0003\0run",  # more arguments than fields
        b"occlum-run-1\0id\0022\0001\0run\0NOEQUALS",
        b"occlum-run-1\0id\0022\0001\0run\0=value",
    ],
)
def test_a_malformed_request_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        wire.decode_request(body)


def test_the_key_names_the_interpreter_and_package() -> None:
    key = wire.zygote_key()
    assert len(key) == 16 and int(key, 16) >= 0
    assert wire.package_dir().endswith("occlum")
    assert wire.package_dir().encode() in wire.identity()


def test_only_a_private_directory_of_ours_holds_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    d = wire.zygote_dir()
    assert d == str(tmp_path / "occlum")
    assert os.stat(d).st_mode & 0o777 == 0o700
    os.chmod(d, 0o755)  # open to others
    assert wire.zygote_dir() is None
    os.rmdir(d)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, d)  # a symlink, even to a private directory
    assert wire.zygote_dir() is None
    os.unlink(d)
    if os.getuid() == 0:
        os.mkdir(d, 0o700)
        os.chown(d, 4321, 4321)  # someone else's
        assert wire.zygote_dir() is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "/bin/true"], True),
        (["--instance-dir", "x", "run", "/bin/true", "-l"], True),
        (["--instance-dir=x", "run", "--strace", "/bin/true"], True),
        (["run"], False),
        (["exec", "/bin/true"], False),
        (["build"], False),
        (["--help"], False),
        (["--instance-dir"], False),
    ],
)
def test_what_goes_to_the_zygote(args: list[str], expected: bool) -> None:
    assert is_run(args) is expected


def test_the_fingerprint_changes_with_any_file_but_bytecode(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "mod.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    root = str(tmp_path / "pkg")
    first = fingerprint(root)
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"bytecode")
    assert fingerprint(root) == first
    st = (tmp_path / "pkg" / "sub" / "mod.py").stat()
    os.utime(tmp_path / "pkg" / "sub" / "mod.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    second = fingerprint(root)
    assert second != first
    (tmp_path / "pkg" / "sub" / "new.py").write_text("")
    assert fingerprint(root) != second


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    kept_r, kept_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    closer, closer_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    z = Zygote(
        sock_path=str(tmp_path / "z.sock"), package=str(tmp_path), fingerprint=[],
        startup_env={}, listener=listener, lock_fd=os.open("/dev/null", os.O_RDONLY),
        kept_r=kept_r, kept_w=kept_w, closer=closer, cache_bytes=10_000, idle=1.0,
    )  # fmt: skip
    yield z
    for name in list(z.kept):
        imagefs.VERIFIED.files.pop(name, None)
        os.close(z.kept[name][0])
    for s in (listener, kept_r, kept_w, closer, closer_peer):
        s.close()
    os.close(z.lock_fd)


def memfd(data: bytes, seals: int = SEALS) -> int:
    fd = os.memfd_create("imagefs:test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def test_only_sealed_files_of_the_size_told_are_kept_within_the_bound(zygote: Zygote) -> None:
    zygote.offer_kept("a", memfd(b"x" * 4000), 4000)  # through the socket, as a child does
    zygote.take_kept()
    assert list(zygote.kept) == ["a"] and "a" in imagefs.VERIFIED.files
    zygote.keep("unsealed", 10, memfd(b"y" * 10, seals=fcntl.F_SEAL_SEAL))
    zygote.keep("lying", 99, memfd(b"z" * 10))
    assert list(zygote.kept) == ["a"]
    zygote.keep("b", 4000, memfd(b"b" * 4000))
    zygote.keep("c", 4000, memfd(b"c" * 4000))  # 12 000 > 10 000: "a" goes
    assert list(zygote.kept) == ["b", "c"] and zygote.kept_bytes == 8000
    assert "a" not in imagefs.VERIFIED.files
    assert os.pread(imagefs.VERIFIED.files["c"], 5, 0) == b"ccccc"


def test_an_image_uses_what_an_earlier_mount_verified_and_only_for_the_same_image(
    tmp_path: Path,
) -> None:
    src = tmp_path / "tree"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "a").write_bytes(b"A" * 9000)
    img = tmp_path / "image.img"
    root_hash = build_image(src, img)
    published: dict[str, int] = {}

    def keep(name: str, fd: int, size: int) -> None:
        published[name] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)

    imagefs.VERIFIED.publish = keep
    try:
        fs = ImageFs(img, root_hash)
        ino = fs.root.lookup(b"etc").lookup(b"a").ino
        fd = fs.inode(ino).open_host_fd(os.O_RDONLY)
        assert os.pread(fd, 4, 0) == b"AAAA"
        os.close(fd)
        fs.close()
        assert len(published) == 1
        imagefs.VERIFIED.files.update(published)
        imagefs.VERIFIED.publish = None
        # a later mount of the same image reads the kept file, even with the image gone bad
        fs = ImageFs(img, root_hash)
        name = f"{fs.verified_name}{ino}"
        assert name in published
        time.sleep(0.05)  # past the file system's clock tick (the build's last write)
        with open(img, "r+b") as f:  # a change in place: new change time
            data = f.read()
            at = data.find(b"A" * 4096)
            f.seek(at)
            f.write(b"B")
        fd = fs.inode(ino).open_host_fd(os.O_RDONLY)  # mounted before the change
        assert os.pread(fd, 4, 0) == b"AAAA"
        os.close(fd)
        fs.close()
        # mounted after: another name, verified again from the image: EIO
        fs = ImageFs(img, root_hash)
        assert f"{fs.verified_name}{ino}" not in imagefs.VERIFIED.files
        with pytest.raises(SyscallError) as exc:
            fs.inode(ino).open_host_fd(os.O_RDONLY)
        assert exc.value.errno == errno.EIO
        fs.close()
    finally:
        imagefs.VERIFIED.publish = None
        for name, fd in published.items():
            imagefs.VERIFIED.files.pop(name, None)
            os.close(fd)


def test_a_slow_close_is_handed_over_first(zygote: Zygote, monkeypatch: pytest.MonkeyPatch) -> None:
    from occlum.platform import fdbudget
    from occlum.platform.fdpass import recv_fds

    ours, closer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    monkeypatch.setattr(zygote, "closer", ours)
    monkeypatch.setattr(fdbudget, "hand_off", zygote.hand_to_closer)
    r, w = os.pipe()
    fdbudget.close_slow(r)
    with pytest.raises(OSError):
        os.fstat(r)  # closed here, but the closer holds it now
    _msg, fds = recv_fds(closer, 16, 4)
    assert len(fds) == 1
    os.write(w, b"x")
    assert os.read(fds[0], 1) == b"x"
    for fd in (fds[0], w):
        os.close(fd)
    ours.close()
    closer.close()


def test_a_run_short_of_descriptors_lets_the_kept_image_files_go() -> None:
    # a run of the zygote inherits the kept files of every image; when its descriptors run
    # short, they go, and the descriptor that found the shortage is moved below the reserve
    import resource

    from occlum.cli import zygote
    from occlum.platform import fdbudget

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = max(int(n) for n in os.listdir("/proc/self/fd")) + 128  # above what tests hold
    held: list[int] = []
    saved = dict(imagefs.VERIFIED.files)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        while True:
            fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            if fd >= limit - fdbudget.RESERVE - 8:
                os.close(fd)
                break
            held.append(fd)
        imagefs.VERIFIED.files.clear()
        for i in range(8):  # the kept files, low in the table as on a host with a small limit
            imagefs.VERIFIED.files[f"x:{i}"] = held.pop()
        top = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(8)]
        held.extend(top)
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        fdbudget.on_short = None
        with pytest.raises(SyscallError) as e:
            fdbudget.lasting(fd)
        assert e.value.errno == errno.EMFILE
        fdbudget.on_short = zygote._let_kept_go
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        got = fdbudget.lasting(fd)
        held.append(got)
        assert got < limit - fdbudget.RESERVE
        assert imagefs.VERIFIED.files == {}
    finally:
        fdbudget.on_short = None
        for fd in held:
            os.close(fd)
        imagefs.VERIFIED.files.clear()
        imagefs.VERIFIED.files.update(saved)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_closer_primes_the_cgroup_lock_while_a_run_starts() -> None:
    # told that a run starts, the closer moves itself into its own cgroup (writes "0" to the
    # cgroup.procs it was given) again and again for a moment, then stops; a pipe stands in
    # for cgroup.procs here
    from occlum.cli import zygote

    r, w = os.pipe()
    os.set_blocking(r, False)
    closer = zygote._start_closer([], w)
    try:
        time.sleep(0.05)
        with pytest.raises(BlockingIOError):
            os.read(r, 64)  # nothing before a run
        closer.send(zygote.PRIME)
        # a loaded machine delays the closer: wait for the moves and for their end, with room
        moves = b""
        quiet_since = start = time.monotonic()
        while time.monotonic() - start < zygote.PRIME_WINDOW * 5 + 2:
            with contextlib.suppress(BlockingIOError):
                got = os.read(r, 4096)
                if got:
                    moves += got
                    quiet_since = time.monotonic()
            now = time.monotonic()
            if len(moves) >= 3 and now - start > zygote.PRIME_WINDOW and now - quiet_since > 0.3:
                break
            time.sleep(0.01)
        assert set(moves) == {ord("0")} and len(moves) >= 3, moves
        assert time.monotonic() - quiet_since > 0.3, "the moves never stopped"
        time.sleep(0.05)
        with pytest.raises(BlockingIOError):
            os.read(r, 64)  # and nothing once the window is over
    finally:
        closer.close()
        os.close(r)


def test_the_seccomp_filter_is_made_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # the zygote makes it before forking its runs (boot.prepare); every LibOS of the process
    # gets those bytes
    from occlum import boot

    made: list[bool] = []

    def counted(*, every_exit: bool = False) -> bytes:
        made.append(every_exit)
        return b"filter %d" % every_exit

    monkeypatch.setattr(boot, "filter_program", counted)
    monkeypatch.setattr(boot, "_FILTERS", {})
    boot.prepare()
    assert boot._filter(False) == b"filter 0" and boot._filter(False) == b"filter 0"
    assert boot._filter(True) == b"filter 1" and boot._filter(True) == b"filter 1"
    assert made == [False, True]


def test_a_spare_forked_before_a_file_was_kept_is_let_go(zygote: Zygote) -> None:
    # the spare inherited the kept files of its fork: once the zygote keeps another, a run
    # must not get the spare (it would verify that file again), and the spare ends
    import selectors
    import subprocess

    from occlum.cli.zygote import Peer, Spare

    proc = subprocess.Popen(["sleep", "60"])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    conn, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        zygote.spare = Spare(proc.pid, os.pidfd_open(proc.pid), ours, zygote.kept_gen)
        zygote.sel.register(zygote.spare.pidfd, selectors.EVENT_READ, "spare")
        zygote.keep("imagefs:kept-after-the-spare", 5, memfd(b"12345"))
        peer = Peer(os.getpid(), [], 0, set(), "0", 0, 0, [])
        assert zygote.hand_to_spare(conn, peer, [b"run"], {}, 0o22, []) is None
        assert zygote.spare is None
        with pytest.raises(ProcessLookupError):  # killed and reaped
            os.kill(proc.pid, 0)
        assert theirs.recv(16) == b""  # nothing was handed to it
    finally:
        proc.kill()
        proc.wait()
        for s in (theirs, conn, client):
            s.close()


def test_a_spare_that_cannot_read_its_request_declines_it(zygote: Zygote) -> None:
    # nothing ran: the client must hear "declined" (and run directly), not an exit status
    import struct

    from occlum.platform.fdpass import send_fds

    zygote.make_spare()
    spare = zygote.spare
    assert spare is not None
    conn, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(wire.REQUEST_FDS)]
    try:
        send_fds(spare.sock, struct.pack("<I", 5), [conn.fileno(), *fds])
        spare.sock.sendall(b"bogus")
        conn.close()
        client.settimeout(30)
        assert client.recv(1) == wire.DECLINED
    finally:
        zygote.dismiss_spare()
        client.close()
        for fd in fds:
            os.close(fd)
