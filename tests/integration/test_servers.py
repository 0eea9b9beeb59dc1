"""Real servers inside the LibOS, driven from outside over the host's network: redis-server with
redis-benchmark and redis-cli, lighttpd with ab, and Debian's PostgreSQL, set up by root inside
and run as its own user, with psql."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = [pytest.mark.slow, pytest.mark.needs_root]

OCCLUM = str(Path(sys.executable).parent / "occlum")
PAGE = "<html>" + "served from inside " * 50 + "</html>\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"the server exited ({proc.returncode}):\n{out}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


@contextlib.contextmanager
def serving(inst: Instance, argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [OCCLUM, "run", *argv], cwd=inst.path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip
    try:
        _wait_for_port(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # forwarded to the server inside
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    for tool in ("redis-server", "redis-benchmark", "redis-cli", "lighttpd", "ab"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            pytest.fail(f"{tool} is missing: run scripts/setup.sh")
    inst = Instance.new(tmp_path_factory.mktemp("servers") / "instance")
    inst.configure()
    libos.place_with_dependencies(
        inst.image,
        {"/bin/redis-server": Path("/usr/bin/redis-server"), "/bin/lighttpd": Path("/usr/sbin/lighttpd")},
    )  # fmt: skip
    www = inst.image / "var" / "www"
    www.mkdir(parents=True)
    (www / "index.html").write_text(PAGE)
    (inst.image / "var" / "tmp").mkdir()
    inst.build()
    return inst


def test_redis_server_with_redis_benchmark(servers: Instance) -> None:
    port = _free_port()
    argv = ["/bin/redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    with serving(servers, argv, port) as proc:
        cli = ["redis-cli", "-p", str(port)]
        assert subprocess.run([*cli, "set", "greeting", "hi from redis"], capture_output=True,
                              text=True, check=True).stdout.strip() == "OK"  # fmt: skip
        got = subprocess.run([*cli, "get", "greeting"], capture_output=True, text=True, check=True)
        assert got.stdout.strip() == "hi from redis"
        bench = subprocess.run(
            ["redis-benchmark", "-p", str(port), "-t", "get,set", "-n", "5000", "-q"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert bench.returncode == 0, bench.stderr
        lines = [ln for ln in bench.stdout.replace("\r", "\n").splitlines() if "per second" in ln]
        assert [ln.split(":")[0] for ln in lines] == ["SET", "GET"], bench.stdout
        assert proc.poll() is None  # still serving
        subprocess.run([*cli, "shutdown", "nosave"], capture_output=True, check=False)
        proc.wait(timeout=20)
        assert proc.returncode == 0


def test_lighttpd_with_ab(servers: Instance) -> None:
    port = _free_port()
    conf = servers.image / "etc" / "lighttpd.conf"
    conf.write_text(
        'server.document-root = "/var/www"\n'
        f"server.port = {port}\n"
        'server.bind = "127.0.0.1"\n'
        'server.upload-dirs = ( "/var/tmp" )\n'
        'index-file.names = ( "index.html" )\n'
        'mimetype.assign = ( ".html" => "text/html" )\n'
    )
    servers.build()
    with serving(servers, ["/bin/lighttpd", "-D", "-f", "/etc/lighttpd.conf"], port):
        ab = subprocess.run(
            ["ab", "-q", "-n", "2000", "-c", "8", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert ab.returncode == 0, ab.stderr
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (ln.partition(":") for ln in ab.stdout.splitlines())
        )
        assert fields["Complete requests"] == "2000"
        assert fields["Failed requests"] == "0"
        assert fields["Document Length"] == f"{len(PAGE)} bytes"


# ---------------------------------------------------------------------------------------------
# PostgreSQL: root inside makes the cluster's directories and hands them to the `postgres` user
# of the image's /etc/passwd, then initdb and the server run as that user (switched with
# util-linux's setpriv, as a Debian admin without PAM would; runuser through PAM is checked
# too), since both refuse to run as root.

PG_UID, PG_GID = 70, 70  # not the host's: the LibOS takes them from the image's /etc/passwd
PGDATA = "/var/lib/postgresql/main"
AS_POSTGRES = ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
TOOLS = ("sh:dash", "mkdir", "chown", "chmod", "cat", "grep", "id", "locale")
PAM_DIR = "/lib/x86_64-linux-gnu/security"


def _postgres_bin() -> Path:
    """Debian's newest installed server: /usr/lib/postgresql/<major>/bin."""
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    if not found or shutil.which("psql") is None or not Path("/usr/sbin/runuser").exists():
        pytest.fail("postgresql, postgresql-client or util-linux is missing: run scripts/setup.sh")
    return found[-1]


def occlum(inst: Instance, *args: str, timeout: float = 120) -> libos.Result:
    proc = subprocess.run(
        [OCCLUM, *args], cwd=inst.path, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=timeout, env={**os.environ, "OCCLUM_LOG_LEVEL": "error"}, check=False,
    )  # fmt: skip
    return libos.Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, Path]]:
    pg_bin = _postgres_bin()
    major = pg_bin.parent.name
    inst = Instance.new(tmp_path_factory.mktemp("postgres") / "instance")
    inst.configure(entry_points=["/bin", "/usr/bin", "/usr/sbin", str(pg_bin)])
    tools = []
    for tool in TOOLS:
        inside, _, host = tool.partition(":")
        tools.append({"name": shutil.which(host or inside), "rename": inside})
    bom = {
        "targets": [
            {"target": "/bin", "copy": [{"files": tools}]},
            {"target": "/usr/bin", "copy": [{"files": ["/usr/bin/setpriv"]}]},
            # runuser, with the PAM modules and configuration of its stack
            {"target": "/usr/sbin", "copy": [{"files": ["/usr/sbin/runuser"]}]},
            {"target": PAM_DIR, "copy": [{"files": [
                f"{PAM_DIR}/pam_{m}.so" for m in ("rootok", "keyinit", "limits", "unix")]}]},
            {"target": "/etc/pam.d", "copy": [{"files": [
                f"/etc/pam.d/{c}" for c in ("runuser", "other", "common-auth",
                                            "common-account", "common-password",
                                            "common-session")]}]},
            {"target": "/etc/security", "copy": [{"files": ["/etc/security/limits.conf"]}]},
            {"target": str(pg_bin), "copy": [{"files": [
                str(pg_bin / p)
                for p in ("postgres", "initdb", "pg_ctl", "pg_controldata", "psql")]}]},
            # initdb loads these (PL/pgSQL, the snowball text search dictionaries)
            {"target": f"/usr/lib/postgresql/{major}/lib", "copy": [{"files": [
                f"/usr/lib/postgresql/{major}/lib/{so}" for so in ("plpgsql.so",
                                                                   "dict_snowball.so")]}]},
            {"target": "/usr/share/postgresql", "copy": [{"dirs": [
                f"/usr/share/postgresql/{major}"]}]},
            # Debian's postgres reads the system's time zone database
            {"target": "/usr/share", "copy": [{"dirs": ["/usr/share/zoneinfo"]}]},
        ]
    }  # fmt: skip
    inst.copy_bom(bom)
    etc = inst.image / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        f"postgres:x:{PG_UID}:{PG_GID}:PostgreSQL administrator:/var/lib/postgresql:/bin/sh\n"
    )
    (etc / "group").write_text(f"root:x:0:\npostgres:x:{PG_GID}:\n")
    # as on Debian, where the server's socket directory is /var/run/postgresql
    (inst.image / "var").mkdir(exist_ok=True)
    (inst.image / "var" / "run").symlink_to("/run")
    inst.build()
    yield inst, pg_bin
    occlum(inst, "stop", "-t", "0")  # whatever a failed test left running


def _psql(port: int, sql: str) -> str:
    res = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
         "-p", str(port), "-U", "postgres", "-d", "postgres", "-c", sql],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, f"{sql}\n{res.stderr}"
    return res.stdout.strip()


def _wait_ready(port: int, inst: Instance, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "SELECT 1"],
        capture_output=True, timeout=60, check=False,
    ).returncode:  # fmt: skip
        assert time.monotonic() < deadline, "the server did not come up" + _server_log(inst)
        time.sleep(0.5)


def _server_log(inst: Instance) -> str:
    log = occlum(inst, "exec", "/bin/cat", "/var/log/postgresql/server.log")
    return f"\n--- server.log ---\n{log.stdout}{log.stderr}"


def test_postgres_started_as_root_runs_as_its_own_user(postgres: tuple[Instance, Path]) -> None:
    inst, pg_bin = postgres
    port = _free_port()
    started = occlum(inst, "start")
    assert started.code == 0, started.describe()
    try:
        setup = occlum(inst, "exec", "/bin/sh", "-c", (
            "set -e; id -u; "
            f"mkdir -p {PGDATA} /run/postgresql /var/log/postgresql; "
            f"chown postgres:postgres /var/lib/postgresql {PGDATA} /run/postgresql "
            "/var/log/postgresql; "
            f"chmod 700 {PGDATA}; chmod 2775 /run/postgresql"
        ))  # fmt: skip
        assert (setup.code, setup.stdout) == (0, "0\n"), setup.describe()
        # as root, the server refuses to start
        as_root = occlum(inst, "exec", str(pg_bin / "postgres"), "-D", PGDATA)
        assert as_root.code == 1, as_root.describe()
        assert '"root" execution of the PostgreSQL server is not permitted' in as_root.stderr
        whoami = occlum(inst, "exec", *AS_POSTGRES, "/bin/id")
        assert whoami.code == 0, whoami.describe()
        assert whoami.stdout == (
            f"uid={PG_UID}(postgres) gid={PG_GID}(postgres) groups={PG_GID}(postgres)\n"
        )
        # the same with runuser, through PAM (pam_rootok: root needs no password)
        with_pam = occlum(inst, "exec", "/usr/sbin/runuser", "-u", "postgres", "--", "/bin/id")
        assert (with_pam.code, with_pam.stdout) == (0, whoami.stdout), with_pam.describe()
        initdb = occlum(inst, "exec", *AS_POSTGRES, str(pg_bin / "initdb"), "-D", PGDATA,
                        "--no-sync", "--auth-local=peer", "--auth-host=trust",
                        "-U", "postgres")  # fmt: skip
        assert initdb.code == 0, initdb.describe()
        assert "Success." in initdb.stdout, initdb.describe()
        pg_ctl = [*AS_POSTGRES, str(pg_bin / "pg_ctl"), "-D", PGDATA]
        start = occlum(inst, "exec", *pg_ctl, "-l", "/var/log/postgresql/server.log", "-w",
                       "-o", f"-c listen_addresses=127.0.0.1 -p {port}", "start")  # fmt: skip
        assert start.code == 0, start.describe() + _server_log(inst)

        _psql(port, "CREATE TABLE notes (id int PRIMARY KEY, body text)")
        _psql(port, "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 500) g")
        assert _psql(port, "SELECT count(*), max(body) FROM notes WHERE id > 10") == "490|note 99"
        assert _psql(port, "SELECT current_user, current_setting('data_directory')") == (
            f"postgres|{PGDATA}"
        )
        # the server's processes inside are the postgres user's (procfs reads their
        # credentials), and its Unix socket is in the directory root made for it
        pid = occlum(inst, "exec", "/bin/sh", "-c", f"read -r pid < {PGDATA}/postmaster.pid; "
                     'echo "$pid"')  # fmt: skip
        ids = occlum(inst, "exec", "/bin/grep", "-E", "^(Uid|Gid):",
                     f"/proc/{pid.stdout.strip()}/status")  # fmt: skip
        want = ["Uid:", *[str(PG_UID)] * 4, "Gid:", *[str(PG_GID)] * 4]
        assert ids.stdout.split() == want, ids.describe()
        # its processes carry the titles the server gives them, as ps shows them on Linux
        titled = occlum(inst, "exec", "/bin/sh", "-c",
                        "grep -l 'postgres: [c]heckpointer' /proc/[0-9]*/cmdline")  # fmt: skip
        assert titled.code == 0 and len(titled.stdout.split()) == 1, titled.describe()
        ids = occlum(
            inst, "exec", "/bin/grep", "^Uid:", titled.stdout.replace("cmdline", "status").strip()
        )
        assert ids.stdout.split() == ["Uid:", *[str(PG_UID)] * 4], ids.describe()
        # over the Unix socket, peer authentication: the server asks the kernel who its client
        # is (SO_PEERCRED) and admits the postgres user only
        psql = [str(pg_bin / "psql"), "-X", "-A", "-t", "-p", str(port), "-U", "postgres",
                "-c", "SELECT current_user, count(*) FROM notes"]  # fmt: skip
        local = occlum(inst, "exec", *AS_POSTGRES, *psql)
        assert (local.code, local.stdout) == (0, "postgres|500\n"), local.describe()
        refused = occlum(inst, "exec", *psql)
        assert refused.code == 2, refused.describe()
        assert 'Peer authentication failed for user "postgres"' in refused.stderr

        stop = occlum(inst, "exec", *pg_ctl, "-m", "fast", "-w", "stop")
        assert stop.code == 0, stop.describe()
        control = occlum(inst, "exec", str(pg_bin / "pg_controldata"), PGDATA)
        assert "Database cluster state:               shut down\n" in control.stdout, (
            control.describe()
        )
        log = _server_log(inst)
        assert "database system is shut down" in log, log

        # the cluster outlives the instance: it is on the encrypted root
        assert occlum(inst, "stop").code == 0
        serve = ["-l", "/var/log/postgresql/server.log", "-w", "-o",
                 f"-c listen_addresses=127.0.0.1 -p {port} -c recovery_init_sync_method=syncfs",
                 "start"]  # fmt: skip
        again = occlum(inst, "start")
        assert again.code == 0, again.describe()
        start = occlum(inst, "exec", *pg_ctl, *serve)
        assert start.code == 0, start.describe() + _server_log(inst)
        assert _psql(port, "SELECT count(*) FROM notes") == "500"
        log = _server_log(inst)
        # both starts found a cleanly stopped cluster: no recovery
        assert log.count("database system was shut down at") == 2, log
        assert "not properly shut down" not in log, log

        # a committed transaction survives a crash of the whole instance: its WAL was
        # fdatasync'd, which commits the encrypted root; the server recovers at its next start
        _psql(port, "INSERT INTO notes VALUES (501, 'written before the crash')")
        os.kill(int((inst.path / "run" / "server.pid").read_text()), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while occlum(inst, "start").code != 0:
            assert time.monotonic() < deadline, "the instance did not start again"
            time.sleep(0.5)
        # the server in the foreground of an `occlum exec`, as a service manager runs it:
        # pg_ctl could take the stale postmaster.pid for the new server's (the instance's
        # pids start over, so both postmasters may have the same pid) and return at once
        server = subprocess.Popen(
            [OCCLUM, "exec", *AS_POSTGRES, str(pg_bin / "postgres"), "-D", PGDATA, "-c",
             "listen_addresses=127.0.0.1", "-p", str(port), "-c",
             "recovery_init_sync_method=syncfs"],
            cwd=inst.path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
        )  # fmt: skip
        try:
            _wait_for_port(port, server, timeout=120)
            _wait_ready(port, inst)
            got = _psql(port, "SELECT body FROM notes WHERE id = 501")
            assert got == "written before the crash"
            stop = occlum(inst, "exec", *pg_ctl, "-m", "fast", "-w", "stop")
            assert stop.code == 0, stop.describe()
            out, _ = server.communicate(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        assert server.returncode == 0, out.decode(errors="replace")
        assert b"automatic recovery in progress" in out, out.decode(errors="replace")
    finally:
        occlum(inst, "stop", "-t", "5")
