"""Resource limits from Occlum.json: a fork bomb, a thread bomb, a memory hog, files in /tmp
and memfds inside hit them, get Linux's errno (or the out-of-memory killer), and the LibOS
names the key to raise, for a reservation as it is made; nothing else is harmed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import libos
from libos import Instance
from occlum.platform.limits import pids_parent

pytestmark = pytest.mark.needs_root

DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"
THREADS = 8
MEMORY_MB = 64


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    base = tmp_path_factory.mktemp("limits")
    i = Instance.new(base / "instance")
    i.configure()
    cfg = json.loads(i.config_path.read_text())
    cfg["resource_limits"]["max_num_of_threads"] = THREADS
    cfg["resource_limits"]["user_space_size"] = f"{MEMORY_MB}MB"
    i.config_path.write_text(json.dumps(cfg))
    variant = libos.Variant("o", "gcc", ("-pthread",))
    hog = libos.compile_c(DIAG / "hog.c", base / "hog", variant)
    fill = libos.compile_c(DIAG / "fill.c", base / "fill", variant)
    reserve = libos.compile_c(DIAG / "reserve.c", base / "reserve", variant)
    freeram = libos.compile_c(DIAG / "freeram.c", base / "freeram", variant)
    arenas = libos.compile_c(DIAG / "arenas.c", base / "arenas", variant)
    libos.place_with_dependencies(
        i.image,
        {
            "/bin/hog": hog,
            "/bin/fill": fill,
            "/bin/reserve": reserve,
            "/bin/freeram": freeram,
            "/bin/arenas": arenas,
            "/bin/echo": Path("/bin/echo"),
            "/bin/sleep": Path("/bin/sleep"),
        },
    )
    i.build()
    return i


@pytest.mark.skipif(os.geteuid() != 0, reason="the thread limit needs a pids cgroup (root)")
@pytest.mark.parametrize("kind", ["fork", "thread"])
def test_process_and_thread_bombs_get_eagain_and_a_named_key(inst: Instance, kind: str) -> None:
    res = inst.run(["/bin/hog", kind])
    assert res.code == 0, res.describe()
    verb = "fork" if kind == "fork" else "pthread_create"
    first = res.stdout.splitlines()[0]
    assert first.startswith(f"{verb} refused after "), res.describe()
    assert first.endswith("Resource temporarily unavailable")
    assert int(first.split()[3].rstrip(":")) <= THREADS + 1
    assert f"resource_limits.max_num_of_threads = {THREADS}" in res.stderr
    assert "raise it in Occlum.json" in res.stderr
    # the instance is fine afterwards: the next run works
    again = inst.run(["/bin/echo", "still here"])
    assert again.code == 0 and again.stdout == "still here\n", again.describe()


def test_a_memory_hog_gets_enomem_and_a_named_key(inst: Instance) -> None:
    res = inst.run(["/bin/hog", "memory"])
    assert res.code == 2, res.describe()
    line = res.stdout.strip()
    assert line.startswith("malloc refused after ") and line.endswith("Cannot allocate memory")
    assert int(line.split()[3]) < MEMORY_MB
    assert f"resource_limits.user_space_size = {MEMORY_MB}MB" in res.stderr
    assert f'raise user_space_size in Occlum.json (e.g. to "{2 * MEMORY_MB}MB")' in res.stderr


def _cgroup_of(pid: int) -> list[Path]:
    parent = pids_parent()
    assert parent is not None
    return sorted(parent.glob(f"occlum-{pid}-*"))


@pytest.mark.skipif(pids_parent() is None, reason="needs a writable pids cgroup (root)")
def test_a_killed_run_leaves_no_pids_cgroup_behind(inst: Instance) -> None:
    """kill -9 of `occlum run` cannot clean up: the next start removes the empty group."""
    # the direct path, so that the process killed is the supervisor whose pid names the group
    # (through the zygote, a killed client has the zygote kill its child, the supervisor)
    proc = subprocess.Popen(
        [*libos._tool("occlum"), "run", "/bin/sleep", "60"], cwd=inst.path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OCCLUM_NO_ZYGOTE": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [
            g for g in _cgroup_of(proc.pid) if (g / "cgroup.procs").read_text().split()
        ]:
            time.sleep(0.1)
        groups = _cgroup_of(proc.pid)
        assert groups, "the program's tree never got a pids cgroup"
    finally:
        proc.kill()
        proc.wait()
    for g in groups:  # whatever of the tree outlived its supervisor goes too
        for _ in range(100):
            try:
                pids = (g / "cgroup.procs").read_text().split()
            except FileNotFoundError:  # another instance starting meanwhile removed it
                break
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(p), signal.SIGKILL)
            time.sleep(0.05)
    # left behind, empty (unless another instance started meanwhile and removed them)
    assert set(_cgroup_of(proc.pid)) <= set(groups)
    res = inst.run(["/bin/echo", "next"])
    assert res.code == 0, res.describe()
    assert _cgroup_of(proc.pid) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the instance's memory needs a memory cgroup (root)")
@pytest.mark.parametrize("target", ["/tmp/big", "memfd"])
def test_ramfs_and_memfd_pages_count_against_user_space_size(inst: Instance, target: str) -> None:
    """Pages of a ramfs file or a memfd are no process's address space: the instance's memory
    cgroup counts them, and a writer past the limit is killed, the key named in one line."""
    res = inst.run(["/bin/fill", target, str(4 * MEMORY_MB)])
    assert res.code == 0, res.describe()
    lines = res.stdout.splitlines()
    assert lines[-1] == "still running", res.describe()
    assert lines[0] == "writer killed by Killed" or lines[0].startswith("write refused after "), (
        res.describe()
    )
    named = [line for line in res.stderr.splitlines() if "user_space_size" in line]
    assert len(named) == 1, res.describe()
    assert f"resource_limits.user_space_size = {MEMORY_MB}MB" in named[0]
    assert "out-of-memory" in named[0] and "raise it in Occlum.json" in named[0]
    # the victim, as the kernel's log names it: the writer, a child of /bin/fill
    assert "fill" in named[0].split(" was killed")[0], named[0]
    again = inst.run(["/bin/echo", "still here"])
    assert again.code == 0 and again.stdout == "still here\n", again.describe()


@pytest.mark.skipif(os.geteuid() != 0, reason="the instance's memory needs a memory cgroup (root)")
def test_a_started_instance_bounds_its_programs_and_keeps_its_spawner(inst: Instance) -> None:
    """`occlum exec` programs are in the memory cgroup from their fork (the spawner is in it
    too, so that none has to move in): past the limit the out-of-memory killer ends a program,
    never the spawner, and the instance goes on starting programs."""
    occlum = libos._tool("occlum")

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*occlum, *args], cwd=inst.path, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip

    assert call("start").returncode == 0
    try:
        res = call("exec", "/bin/fill", "memfd", str(4 * MEMORY_MB))
        assert res.stdout.splitlines()[0] == "writer killed by Killed", res
        assert res.returncode == 0, res
        again = call("exec", "/bin/echo", "still here")
        assert again.returncode == 0 and again.stdout == "still here\n", again
    finally:
        call("stop", "-t", "1")


def test_malloc_arenas_refused_by_the_limit_are_not_named(inst: Instance) -> None:
    """glibc's malloc copes with a thread arena the limit refuses (it shares one): no line."""
    res = inst.run(["/bin/arenas", "4"])
    assert res.code == 0 and res.stdout == "4 threads allocated\n", res.describe()
    assert "user_space_size" not in res.stderr, res.describe()


# 4097 MiB: the low word of the length alone is small
@pytest.mark.parametrize("mib", [1024, 4097])
def test_a_reservation_past_user_space_size_names_the_key_when_made(
    inst: Instance, mib: int
) -> None:
    """A virtual machine reserves its heap or code cache first, and says it could not in words
    of its own: the LibOS names the key, and a size, at that very mmap."""
    res = inst.run(["/bin/reserve", str(mib)])
    assert res.code == 1, res.describe()
    assert res.stdout == f"reserving {mib} MiB: Cannot allocate memory\nreserved 1 MiB\n"
    named = [line for line in res.stderr.splitlines() if "user_space_size" in line]
    assert len(named) == 1, res.describe()  # not again at the failing exit
    assert "/bin/reserve (pid " in named[0]
    assert f"an mmap of {mib}MB fails (ENOMEM): it exceeds " in named[0]
    assert f"resource_limits.user_space_size ({MEMORY_MB}MB)" in named[0]
    least = int(named[0].split("set it to at least ")[1].split("MB")[0])
    assert mib < least <= mib + MEMORY_MB + 64, res.describe()


def test_reservations_that_fit_are_not_named(inst: Instance) -> None:
    res = inst.run(["/bin/reserve", "16"])
    assert res.code == 0, res.describe()
    assert res.stdout == "reserved 16 MiB\nreserved 1 MiB\n"
    assert "user_space_size" not in res.stderr, res.describe()


@pytest.mark.skipif(os.geteuid() != 0, reason="the instance's memory needs a memory cgroup (root)")
def test_sysinfo_free_memory_is_what_the_programs_leave_of_user_space_size(
    inst: Instance,
) -> None:
    res = inst.run(["/bin/freeram", "32"])
    assert res.code == 0, res.describe()
    total, gone = res.stdout.splitlines()
    assert total == f"total {MEMORY_MB} MiB"
    assert 30 <= int(gone.split()[4]) <= 34, res.describe()


@pytest.mark.skipif(os.geteuid() != 0, reason="the instance's memory needs a memory cgroup (root)")
def test_doctor_counts_the_files_programs_write_in_user_space_size(inst: Instance) -> None:
    """200 MiB in /tmp is no process's address space, but it is the programs' memory."""
    occlum = str(Path(sys.executable).parent / "occlum")
    res = libos.run_killable(
        [occlum, "doctor", "/bin/fill", "/tmp/big", "200"],
        cwd=inst.path,
        stdin=None,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "warn"},
        timeout=libos.RUN_TIMEOUT,
    )
    assert res.stdout == "wrote 200 MiB\nstill running\n", res.describe()
    size = re.search(
        rf'resource_limits\.user_space_size: "(\d+)MB"  \(now "{MEMORY_MB}MB"\)', res.stderr
    )
    assert size is not None, res.describe()
    assert int(size.group(1)) > 200


JAVA = Path("/usr/bin/java")


@pytest.mark.slow
@pytest.mark.skipif(not JAVA.exists(), reason="no java on this machine")
def test_java_under_the_default_user_space_size_names_the_key(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Java reserves its code cache first and fails in its own words; the LibOS's line, at the
    reservation, names the key and a size that gets it further."""
    home = JAVA.resolve().parent.parent
    i = Instance.new(tmp_path_factory.mktemp("java") / "instance")
    i.configure(entry_points=["/"])  # the default user_space_size, 300MB
    for part in ("bin", "lib", "conf", "release"):
        src, dest = home / part, i.image / str(home).lstrip("/") / part
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True)
        else:
            shutil.copy2(src, dest)
    java = home / "bin/java"
    libos.place_with_dependencies(i.image, {str(java): java})
    # libjvm.so is loaded with dlopen: its libraries are not java's
    interp = libos.elf_interpreter(java)
    assert interp is not None
    listed = subprocess.run(
        [interp, "--list", str(home / "lib/server/libjvm.so")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for lib in re.findall(r"=> (/\S+) \(0x", listed):
        libos.place(i.image, Path(lib), lib)
    i.build()
    res = i.run([str(java), "-version"], timeout=120)
    assert res.code == 1, res.describe()
    assert "Could not reserve enough space for code cache" in res.stdout + res.stderr
    named = [line for line in res.stderr.splitlines() if "user_space_size" in line]
    assert len(named) == 1, res.describe()
    assert "bin/java (pid " in named[0] and "resource_limits.user_space_size (300MB)" in named[0]
    least = int(named[0].split("set it to at least ")[1].split("MB")[0])
    assert least > 300


NODE = Path("/usr/bin/node")


@pytest.mark.slow
@pytest.mark.skipif(not NODE.exists(), reason="no node on this machine")
def test_node_under_the_default_user_space_size_names_the_key(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """V8 stops with a SIGTRAP when it cannot reserve its code range; the line before it names
    the key."""
    i = Instance.new(tmp_path_factory.mktemp("node") / "instance")
    i.configure(entry_points=["/"])
    libos.place_with_dependencies(i.image, {str(NODE): NODE})
    i.build()
    res = i.run([str(NODE), "-e", "console.log(1 + 1)"], timeout=120)
    assert res.code == 128 + 5, res.describe()  # SIGTRAP
    named = [line for line in res.stderr.splitlines() if "user_space_size" in line]
    assert len(named) == 1, res.describe()
    assert "/usr/bin/node (pid " in named[0] and "fails (ENOMEM)" in named[0]
    assert "resource_limits.user_space_size (300MB)" in named[0]
