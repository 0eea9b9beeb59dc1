"""``occlum run`` through the zygote (occlum.cli.zygote) against the direct path.

Each test gets a zygote directory of its own (``XDG_RUNTIME_DIR``), so the zygote it talks to
is one this module started; every zygote started here is ended at teardown.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")
DATA = b"image data, first build\n"


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    base = tmp_path_factory.mktemp("zyg")
    share = base / "share"
    share.mkdir()
    inst = Instance.new(base / "instance")
    inst.configure(hostfs=share)
    cfg = inst.config()
    env = cfg["env"]
    assert isinstance(env, dict)
    env["untrusted"] = ["ZYGOTE_TEST_VAR"]
    inst.write_config(cfg)
    libos.place_with_dependencies(
        inst.image, {"/bin/sh": Path("/bin/dash"), "/bin/cat": Path("/bin/cat")}
    )
    (inst.image / "etc" / "data.txt").write_bytes(DATA)
    inst.build()
    yield inst


@pytest.fixture
def zdir() -> Iterator[Path]:
    """A runtime directory of its own (short: the socket's path must fit sun_path)."""
    with libos.zygote_runtime_dir("oz") as d:
        yield d


def occlum(
    inst: Instance,
    zdir: Path,
    *args: str,
    direct: bool = False,
    umask: int | None = None,
    nofile: int | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes = b"",
) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, "XDG_RUNTIME_DIR": str(zdir), "OCCLUM_LOG_LEVEL": "error"}
    full_env.pop("OCCLUM_NO_ZYGOTE", None)
    if direct:
        full_env["OCCLUM_NO_ZYGOTE"] = "1"
    full_env.update(env or {})

    def preexec() -> None:
        if umask is not None:
            os.umask(umask)
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return subprocess.run(
        [OCCLUM, *args], cwd=cwd or inst.path, env=full_env, input=stdin, capture_output=True,
        timeout=120, check=False, preexec_fn=preexec,
    )  # fmt: skip


def zygote_pid(zdir: Path) -> int | None:
    files = list((zdir / "occlum").glob("*.pid"))
    if not files:
        return None
    pid = int(files[0].read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def supervisor_of_a_run(inst: Instance, zdir: Path, direct: bool = False) -> tuple[int, int, int]:
    """(client pid, pid and parent pid of the process that ran the LibOS) for one run."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(zdir), "OCCLUM_LOG_LEVEL": "error"}
    env.pop("OCCLUM_NO_ZYGOTE", None)
    if direct:
        env["OCCLUM_NO_ZYGOTE"] = "1"
    pids = inst.path / "run" / "pids"
    before = set(os.listdir(pids)) if pids.exists() else set()
    proc = subprocess.Popen(
        [OCCLUM, "run", "/bin/sh", "-c", "read x"], cwd=inst.path, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = set(os.listdir(pids)) - before if pids.exists() else set()
            if new:
                sup = int(new.pop())
                stat = Path(f"/proc/{sup}/stat").read_text()
                return proc.pid, sup, int(stat[stat.rindex(")") + 2 :].split()[1])
            time.sleep(0.05)
        raise AssertionError("no run showed up in run/pids")
    finally:
        proc.communicate(b"\n", timeout=60)


SCRIPT = (
    "echo $ZYGOTE_TEST_VAR; ulimit -n; echo x > /host/made; cat /etc/data.txt; echo err >&2; exit 7"
)


def test_a_run_through_the_zygote_matches_the_direct_path(inst: Instance, zdir: Path) -> None:
    share = Path(str(inst.config()["mount"][-1]["source"]))  # type: ignore[index]
    made = share / "made"
    results = []
    # the zygote's first run starts it, the second is warm; the umask and the resource
    # limits are the caller's (a file the LibOS makes on the host, the program's limit)
    for direct in (True, False, False, True, False):
        mask, nofile = (0o077, 300) if len(results) < 3 else (0o022, 200)
        made.unlink(missing_ok=True)
        res = occlum(
            inst, zdir, "run", "/bin/sh", "-c", SCRIPT, direct=direct,
            umask=mask, nofile=nofile, env={"ZYGOTE_TEST_VAR": "from-the-host"},
        )  # fmt: skip
        results.append((res.returncode, res.stdout, res.stderr, made.stat().st_mode & 0o777))
    assert results[0] == (7, b"from-the-host\n300\n" + DATA, b"err\n", 0o600)
    assert results[1] == results[0] == results[2]
    assert results[3] == (7, b"from-the-host\n200\n" + DATA, b"err\n", 0o644)
    assert results[4] == results[3]
    assert zygote_pid(zdir) is not None


def test_the_run_is_forked_by_the_zygote_unless_disabled(inst: Instance, zdir: Path) -> None:
    client, supervisor, _parent = supervisor_of_a_run(inst, zdir, direct=True)
    assert supervisor == client
    assert zygote_pid(zdir) is None  # OCCLUM_NO_ZYGOTE=1 starts none
    occlum(inst, zdir, "run", "/bin/sh", "-c", "true")  # starts it
    zpid = zygote_pid(zdir)
    assert zpid is not None
    client, supervisor, parent = supervisor_of_a_run(inst, zdir)
    assert supervisor != client and parent == zpid


def test_the_instance_dir_is_found_from_the_callers_cwd(inst: Instance, zdir: Path) -> None:
    for direct in (True, False):
        res = occlum(
            inst, zdir, "--instance-dir", inst.path.name, "run", "/bin/cat", "/etc/data.txt",
            cwd=inst.path.parent, direct=direct,
        )  # fmt: skip
        assert (res.returncode, res.stdout) == (0, DATA), res.stderr


def test_errors_and_stdin_are_the_same(inst: Instance, zdir: Path) -> None:
    outs = []
    for direct in (True, False, False):
        missing = occlum(inst, zdir, "run", "/bin/nope", direct=direct)
        piped = occlum(inst, zdir, "run", "/bin/cat", direct=direct, stdin=b"through stdin\n")
        outs.append((missing.returncode, missing.stderr, piped.returncode, piped.stdout))
    assert outs[0][0] == 127 and outs[0][3] == b"through stdin\n"
    assert outs[0] == outs[1] == outs[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signals_reach_the_program_as_directly(inst: Instance, zdir: Path, sig: int) -> None:
    occlum(inst, zdir, "run", "/bin/sh", "-c", "true")  # a zygote, warm
    codes = []
    for direct in (True, False):
        env = {**os.environ, "XDG_RUNTIME_DIR": str(zdir), "OCCLUM_LOG_LEVEL": "error"}
        env["OCCLUM_NO_ZYGOTE"] = "1" if direct else "0"
        proc = subprocess.Popen(
            [OCCLUM, "run", "/bin/sh", "-c", "echo up; read x"], cwd=inst.path, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        proc.send_signal(sig)
        proc.wait(timeout=60)  # stdin stays open: an end of file would end `read` too
        _out, err = proc.communicate(timeout=60)
        codes.append((proc.returncode, err))
    assert codes[0] == codes[1] == (128 + sig, b"")


def test_a_changed_libos_is_not_served_by_the_old_zygote(inst: Instance, zdir: Path) -> None:
    occlum(inst, zdir, "run", "/bin/sh", "-c", "true")
    old = zygote_pid(zdir)
    assert old is not None
    # a new modification time is a change to the zygote (the contents, and so the
    # measurement, stay the same, so the direct path still runs the instance)
    marker = Path(libos.__file__).resolve().parents[1] / "src" / "occlum" / "py.typed"
    st = marker.stat()
    os.utime(marker, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        res = occlum(inst, zdir, "run", "/bin/cat", "/etc/data.txt")
        assert (res.returncode, res.stdout) == (0, DATA), res.stderr
        for _ in range(100):  # it stops listening at once, and ends with its last run
            if zygote_pid(zdir) != old:
                break
            time.sleep(0.05)
        assert zygote_pid(zdir) != old
        res = occlum(inst, zdir, "run", "/bin/cat", "/etc/data.txt")  # a new zygote
        assert (res.returncode, res.stdout) == (0, DATA), res.stderr
        new = zygote_pid(zdir)
        assert new is not None and new != old
    finally:
        os.utime(marker, ns=(st.st_atime_ns, st.st_mtime_ns))


def _kept_image_files(zpid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{zpid}/fd"):
        try:
            target = os.readlink(f"/proc/{zpid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:imagefs:"):
            out.append(target)
    return out


def test_verified_image_files_are_kept_and_a_changed_image_is_not_served_from_them(
    tmp_path: Path, zdir: Path
) -> None:
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    libos.place_with_dependencies(inst.image, {"/bin/cat": Path("/bin/cat")})
    data = (b"0123456789abcdef" * 512)[:8000] + b"\n"
    (inst.image / "etc" / "data.txt").write_bytes(data)
    inst.build()
    first = occlum(inst, zdir, "run", "/bin/cat", "/etc/data.txt")
    assert (first.returncode, first.stdout) == (0, data), first.stderr
    zpid = zygote_pid(zdir)
    assert zpid is not None
    kept = _kept_image_files(zpid)
    assert kept, "the zygote kept no verified image file"
    warm = occlum(inst, zdir, "run", "/bin/cat", "/etc/data.txt")
    assert (warm.returncode, warm.stdout) == (0, data), warm.stderr
    # one byte of the file's data changed in the image: EIO, not the kept pages
    image = inst.path / "build" / "image.img"
    raw = bytearray(image.read_bytes())
    at = raw.find(data[:64])
    assert at >= 0
    raw[at + 100] ^= 1
    image.write_bytes(bytes(raw))
    tampered = occlum(inst, zdir, "run", "/bin/cat", "/etc/data.txt")
    assert tampered.returncode != 0 and tampered.stdout == b""
    assert b"Input/output error" in tampered.stderr, tampered.stderr
    # rebuilt with new contents: the new contents
    (inst.image / "etc" / "data.txt").write_bytes(b"second build\n")
    inst.build()
    for _ in range(2):
        res = occlum(inst, zdir, "run", "/bin/cat", "/etc/data.txt")
        assert (res.returncode, res.stdout) == (0, b"second build\n"), res.stderr
    assert zygote_pid(zdir) == zpid  # all through the one zygote


def test_runs_go_on_when_the_zygote_holds_over_a_thousand_files(tmp_path: Path, zdir: Path) -> None:
    # the kept image files take the zygote's descriptors past 1024 (FD_SETSIZE): nothing a
    # run does may wait with select(), which refuses such numbers (a run failed with a
    # traceback once python3's standard library had been read)
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    libos.place_with_dependencies(
        inst.image, {"/bin/sh": Path("/bin/dash"), "/bin/cat": Path("/bin/cat")}
    )
    data = inst.image / "data"
    data.mkdir()
    for i in range(1100):
        (data / f"f{i}").write_text(f"{i}\n")
    inst.build()
    first = occlum(inst, zdir, "run", "/bin/sh", "-c", "cat /data/* > /dev/null; cat /data/f7")
    assert first.returncode == 0, first.stderr
    zpid = zygote_pid(zdir)
    assert zpid is not None
    assert len(_kept_image_files(zpid)) > 1024
    for _ in range(2):
        again = occlum(inst, zdir, "run", "/bin/cat", "/data/f1099")
        assert (again.returncode, again.stdout, again.stderr) == (0, b"1099\n", b"")
    assert zygote_pid(zdir) == zpid


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_a_killed_client_takes_its_run_with_it(inst: Instance, zdir: Path) -> None:
    occlum(inst, zdir, "run", "/bin/sh", "-c", "true")  # a zygote, warm
    env = {**os.environ, "XDG_RUNTIME_DIR": str(zdir), "OCCLUM_LOG_LEVEL": "error"}
    env.pop("OCCLUM_NO_ZYGOTE", None)
    pids = inst.path / "run" / "pids"
    before = set(os.listdir(pids)) if pids.exists() else set()
    proc = subprocess.Popen(
        [OCCLUM, "run", "/bin/sh", "-c", "echo up; read x"], cwd=inst.path, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"up\n"
        supervisor = int((set(os.listdir(pids)) - before).pop())
        run = {supervisor} | _descendants(supervisor)
        assert len(run) >= 3  # the supervisor, the tree's init, the program
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in run):
        time.sleep(0.05)
    assert not [p for p in run if os.path.exists(f"/proc/{p}")]
    proc.stdin.close()
    proc.stdout.close()
    assert zygote_pid(zdir) is not None  # the zygote itself lives on


@pytest.mark.parametrize("option", ["--strace", "--summary"])
def test_run_options_work_through_the_zygote(inst: Instance, zdir: Path, option: str) -> None:
    results = []
    for direct in (True, False, False):
        res = occlum(inst, zdir, "run", option, "/bin/cat", "/etc/data.txt", direct=direct)
        results.append((res.returncode, res.stdout, b"openat" in res.stderr))
    assert results[0] == (0, DATA, True)
    assert results[0] == results[1] == results[2]
    assert zygote_pid(zdir) is not None


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_a_warm_run_is_served_by_the_child_forked_ahead(inst: Instance, zdir: Path) -> None:
    # once a run has ended the zygote forks the next run's child (the spare), so that a run
    # does not wait for the fork; a spare that inherited fewer kept files than the zygote now
    # holds is never used
    for _ in range(2):  # the first run keeps image files: the spare forked as it started goes
        occlum(inst, zdir, "run", "/bin/sh", "-c", "true")
    zpid = zygote_pid(zdir)
    assert zpid is not None
    deadline = time.monotonic() + 30
    while len(_children(zpid)) < 2 and time.monotonic() < deadline:  # the closer and a spare
        time.sleep(0.02)
    before = _children(zpid)
    _client, supervisor, parent = supervisor_of_a_run(inst, zdir)
    assert parent == zpid
    assert supervisor in before, f"the run's process {supervisor} was not forked ahead"
    res = occlum(inst, zdir, "run", "/bin/cat", "/etc/data.txt")
    assert (res.returncode, res.stdout) == (0, DATA), res.stderr
