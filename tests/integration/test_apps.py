"""Real, unmodified Debian programs: the same command natively and inside the LibOS must give
the same output and exit status. The instance is built with copy_bom (automatic dependency
copying, plus python3's standard library through `dirs:`)."""

from __future__ import annotations

import glob
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = [pytest.mark.slow, pytest.mark.needs_root]

PY_VERSION = "python3.11"
PROGRAMS = [
    "busybox",
    "dash",
    "bash",
    "ls",
    "cat",
    "grep",
    "find",
    "md5sum",
    "tar",
    "gzip",
    "seq",
    "sort",
    "head",
    "tail",
    "wc",
    "echo",
    "true",
    "false",
    "mkdir",
    "rm",
    "uname",
    "sqlite3",
    "python3",
    "env",
    "touch",
    "sh",
    "xargs",
    "cmp",
    "ln",
    "printf",
    "script",
    "tty",
    "cut",
]


def _host(prog: str) -> str:
    for d in ("/usr/bin", "/bin"):
        p = Path(d) / prog
        if p.exists():
            return str(p)
    found = shutil.which(prog)
    if not found:
        raise RuntimeError(f"{prog} is not installed on the host (run scripts/setup.sh)")
    return found


@pytest.fixture(scope="session")
def app_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = Instance.new(tmp_path_factory.mktemp("apps") / "instance")
    inst.configure(entry_points=["/bin", "/usr/bin"])
    stdlib = f"/usr/lib/{PY_VERSION}"
    dynload = sorted(glob.glob(f"{stdlib}/lib-dynload/*.so"))
    bom = {
        "targets": [
            {
                "target": "/usr/bin",
                "copy": [{"files": [_host(p) for p in PROGRAMS]}],
            },
            {
                "target": "/bin",
                "copy": [{"files": [_host("sh"), _host("bash"), _host("busybox")]}],
            },
            {
                "target": "/usr/lib",
                "copy": [{"dirs": [stdlib]}],
            },
            {
                # copied again as files so that copy_bom copies their libraries too
                "target": f"{stdlib}/lib-dynload",
                "copy": [{"files": dynload}],
            },
        ]
    }
    inst.copy_bom(bom)
    inst.build()
    yield inst
    shutil.rmtree(inst.path, ignore_errors=True)


def _same(inst: Instance, argv: list[str], stdin: str | None = None) -> libos.Result:
    native = libos.run_native(argv, stdin=stdin)
    inside = inst.run(argv, stdin=stdin)
    assert "Traceback" not in inside.stderr or "Traceback" in native.stderr, inside.describe()
    assert (inside.code, inside.stdout) == (native.code, native.stdout), (
        f"{argv}\n--- native ---\n{native.describe()}\n--- libos ---\n{inside.describe()}"
    )
    return inside


BUSYBOX = [
    ["/bin/busybox", "echo", "hello", "world"],
    ["/bin/busybox", "sh", "-c", "x=3; while [ $x -gt 0 ]; do echo $x; x=$((x-1)); done; exit 4"],
    ["/bin/busybox", "sh", "-c", "echo a b c | busybox wc -w; busybox seq 5 | busybox tail -2"],
    ["/bin/busybox", "uname", "-sm"],
    ["/bin/busybox", "false"],
]


@pytest.mark.parametrize("argv", BUSYBOX, ids=lambda a: " ".join(a[1:3]))
def test_busybox(app_instance: Instance, argv: list[str]) -> None:
    _same(app_instance, argv)


def test_busybox_ls_root(app_instance: Instance) -> None:
    """`ls /` shows exactly the image's top level plus the mount points."""
    res = app_instance.run(["/bin/busybox", "ls", "-1", "/"])
    assert res.code == 0, res.describe()
    expected = {p.name for p in app_instance.image.iterdir()} | {"dev", "proc", "tmp", "host"}
    assert set(res.stdout.split()) == expected, res.describe()


SHELL_SCRIPTS = [
    "seq 1 1000 | sort -rn | head -1",
    "for i in 1 2 3; do echo item $i; done",
    'echo "nested: $(echo $(echo deep))"',
    "false; echo status $?; true; echo status $?",
    "x=$(seq 1 10 | wc -l); echo lines $x; exit 3",
    "cat <<EOF | grep -c line\nline one\nline two\nother\nEOF",
    "echo to-stderr >&2; echo to-stdout",
    "(echo sub; exit 7); echo after $?",
    "f() { echo func $1; return 2; }; f arg; echo $?",
    "true & wait $!; echo waited $?",
]


@pytest.mark.parametrize("shell", ["/usr/bin/dash", "/usr/bin/bash"])
@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shells(app_instance: Instance, shell: str, script: str) -> None:
    _same(app_instance, [shell, "-c", script])


def test_bash_stdin_script(app_instance: Instance) -> None:
    _same(
        app_instance, ["/usr/bin/bash", "-s"], stdin="echo from stdin; read x; echo got $x\nhello\n"
    )


COREUTILS = r"""
set -e
D=$1; mkdir -p $D; cd $D; rm -rf work; mkdir work; cd work
mkdir -p a/b/c
echo alpha > a/one.txt
echo beta > a/b/two.txt
printf 'gamma\nneedle here\n' > a/b/c/three.txt
ln -s one.txt a/link
touch -h -d @0 a/one.txt a/b/two.txt a/b/c/three.txt a/link a/b/c a/b a
ls -lan --time-style=+%s a | tail -n +2 | grep -v '^d'
ls -1 a
cat a/one.txt a/b/two.txt
grep -r needle . | sort
find . | sort
find . -type f -name '*.txt' | sort | xargs md5sum
tar czf ../w.tgz a
mkdir ../x && cd ../x && tar xzf ../w.tgz
find . -type f | sort | xargs md5sum
cmp a/b/c/three.txt ../work/a/b/c/three.txt && echo identical
"""


def test_coreutils(app_instance: Instance, tmp_path: Path) -> None:
    argv = ["/usr/bin/bash", "-c", COREUTILS, "bash"]
    native = libos.run_native([*argv, str(tmp_path / "cu")])
    assert native.code == 0, native.describe()
    inside = app_instance.run([*argv, "/tmp/cu"])
    assert (inside.code, inside.stdout) == (native.code, native.stdout), (
        f"--- native ---\n{native.describe()}\n--- libos ---\n{inside.describe()}"
    )


PYTHON = r"""
import hashlib, json, sqlite3, subprocess, sys
db = sqlite3.connect(":memory:")
db.execute("create table t (k integer primary key, v text)")
db.executemany("insert into t (v) values (?)", [(str(i),) for i in range(100)])
n, = db.execute("select count(*) from t").fetchone()
out = subprocess.run(["/usr/bin/echo", "from", "a", "child"], capture_output=True, text=True)
rc = subprocess.call(["/usr/bin/bash", "-c", "exit 5"])
print(json.dumps({"rows": n, "child": out.stdout.strip(), "rc": rc,
                  "sha": hashlib.sha256(b"occlum").hexdigest(), "version": sys.version_info[:2]},
                 sort_keys=True))
"""


def test_python3(app_instance: Instance) -> None:
    res = _same(app_instance, ["/usr/bin/python3", "-c", PYTHON])
    assert '"rows": 100' in res.stdout


def test_python3_file_io(app_instance: Instance, tmp_path: Path) -> None:
    code = (
        "import os, sys, pathlib; d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True);"
        "(d / 'f.txt').write_text('x' * 100000);"
        "print(len((d / 'f.txt').read_text()), sorted(os.listdir(d)))"
    )
    native = libos.run_native(["/usr/bin/python3", "-c", code, str(tmp_path / "py")])
    inside = app_instance.run(["/usr/bin/python3", "-c", code, "/tmp/py"])
    assert (inside.code, inside.stdout) == (native.code, native.stdout), inside.describe()


def test_script_runs_a_command_on_a_pseudo_terminal(app_instance: Instance) -> None:
    """util-linux script(1): openpty, a child with the slave as controlling terminal, its
    output copied from the master (onlcr makes each newline CR LF)."""
    _same(
        app_instance,
        ["/usr/bin/script", "-qc", "echo hi; test -t 0 && echo on-a-tty; tty | cut -c1-9", "/dev/null"],
    )  # fmt: skip


PTY_FORK = r"""
import os, pty
pid, fd = pty.fork()
if pid == 0:
    facts = (os.isatty(0), os.ttyname(0).startswith("/dev/pts/"), os.getsid(0) == os.getpid(),
             os.tcgetpgrp(0) == os.getpid())
    os.write(1, b"child: %s\n" % " ".join(map(str, facts)).encode())
    os._exit(3)
out = b""
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:  # EIO: the child closed the slave
        break
    if not chunk:
        break
    out += chunk
print(out, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_python3_pty_fork(app_instance: Instance) -> None:
    res = _same(app_instance, ["/usr/bin/python3", "-c", PTY_FORK])
    assert "child: True True True True" in res.stdout


SQL = """
create table kv (k integer primary key, v text);
begin;
with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000)
insert into kv (v) select 'value ' || i from n;
commit;
select count(*), min(v), max(k) from kv;
pragma integrity_check;
"""


def test_sqlite3_cli(app_instance: Instance, tmp_path: Path) -> None:
    native = libos.run_native(["/usr/bin/sqlite3", str(tmp_path / "db.sqlite")], stdin=SQL)
    assert native.code == 0, native.describe()
    inside = app_instance.run(["/usr/bin/sqlite3", "/tmp/db.sqlite"], stdin=SQL)
    assert (inside.code, inside.stdout) == (native.code, native.stdout), inside.describe()
    # reopening the file database sees the committed rows
    again = app_instance.run(
        [
            "/usr/bin/bash",
            "-c",
            "printf '%s' \"$1\" | sqlite3 /tmp/db2 && sqlite3 /tmp/db2 'select count(*) from kv'",
            "bash",
            SQL,
        ]
    )
    assert again.code == 0, again.describe()
    assert again.stdout.splitlines()[-1] == "1000"


def test_python_version_matches_stdlib() -> None:
    """The stdlib copied with `dirs:` is the one the host's /usr/bin/python3 uses."""
    res = libos.run_native(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"])
    assert res.stdout.strip() == str(tuple(int(x) for x in PY_VERSION[6:].split(".")))
    assert sys.version_info >= (3, 11)
