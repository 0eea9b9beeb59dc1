"""Real servers inside the LibOS, driven from outside over the host's network: redis-server with
redis-benchmark and redis-cli, lighttpd with ab."""

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
