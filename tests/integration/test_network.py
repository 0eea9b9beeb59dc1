"""The network switch: the host's network by default, a loopback of its own, or none at all."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1 that greets whoever connects."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"hello from the host")
        srv.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return libos.compile_c(DIAG / "tcp_probe.c", tmp_path_factory.mktemp("probe") / "tcp_probe")


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        (None, "got: hello from the host"),  # the default
        ("host", "got: hello from the host"),
        ("loopback", "connect: Connection refused"),  # its own 127.0.0.1: nobody listens
        ("none", "connect: Network is unreachable"),
    ],
)
def test_the_network_switch(
    tmp_path: Path,
    server: int,
    probe: Path,
    network: str | None,
    expected: str,
) -> None:
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    if network is not None:
        cfg = json.loads(inst.config_path.read_text())
        cfg["feature"]["network"] = network
        inst.config_path.write_text(json.dumps(cfg))
    libos.place_with_dependencies(inst.image, {"/bin/tcp_probe": probe})
    inst.build()
    res = inst.run(["/bin/tcp_probe", str(server)])
    assert res.stdout.strip() == expected, res.describe()


@pytest.mark.parametrize("network", ["host", "loopback"])
def test_proc_sys_net_is_the_instances_network(tmp_path: Path, network: str) -> None:
    """/proc/sys/net shows the network the instance's programs are on: the host's, or its own
    namespace's, which has only the loopback interface."""
    lister = libos.compile_c(DIAG / "list_dir.c", tmp_path / "list_dir")
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    cfg = json.loads(inst.config_path.read_text())
    cfg["feature"]["network"] = network
    inst.config_path.write_text(json.dumps(cfg))
    libos.place_with_dependencies(inst.image, {"/bin/list_dir": lister})
    inst.build()
    res = inst.run(["/bin/list_dir", "/proc/sys/net/ipv4/conf"])
    assert res.code == 0, res.describe()
    if network == "host":
        expected = sorted(os.listdir("/proc/sys/net/ipv4/conf"))
    else:
        expected = ["all", "default", "lo"]
    assert res.stdout.split() == expected, res.describe()


def test_a_server_accepts_and_receives_natively(tmp_path: Path) -> None:
    """accept, accept4, recvfrom and recvmsg with an address buffer never reach the LibOS on
    the host's network: `--summary` counts served calls only, and shows none of them (the
    sockets themselves are made by the supervisor, there)."""
    prog = libos.compile_c(DIAG / "tcp_accepts.c", tmp_path / "tcp_accepts")
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    libos.place_with_dependencies(inst.image, {"/bin/tcp_accepts": prog})
    inst.build()
    res = libos.run_killable(
        [*libos._tool("occlum"), "run", "--summary", "/bin/tcp_accepts"],
        cwd=inst.path,
        stdin=None,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "warn"},
        timeout=libos.RUN_TIMEOUT,
    )
    assert res.code == 0, res.describe()
    assert res.stdout == "accepted 20, received 5\n", res.describe()
    served = dict(re.findall(r"│\s*([a-z_0-9]+)\s*│\s*(\d+)\s*│", res.stderr))
    assert served.get("socket") == "23", res.describe()  # 1 listener, 20 clients, 2 UDP
    for call in ("accept", "accept4", "recvfrom", "recvmsg", "getsockname", "getpeername"):
        assert call not in served, res.describe()


def test_an_abstract_name_on_a_hosts_unix_socket_is_refused(tmp_path: Path) -> None:
    """A Unix socket made outside (here `occlum run`'s standard input) belongs to the host's
    network namespace: an abstract name bound with it would be the host's, so bind refuses
    it (EPERM); a socket the program makes binds the same name in the instance's own."""
    prog = libos.compile_c(DIAG / "bind_abstract.c", tmp_path / "bind_abstract")
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    libos.place_with_dependencies(inst.image, {"/bin/bind_abstract": prog})
    inst.build()
    name = f"occlum-test-stdin-{os.getpid()}"
    env = {**os.environ, "OCCLUM_LOG_LEVEL": "error"}
    got = []
    for which in ("stdin", "own"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as host_sock:
            proc = subprocess.run(
                [*libos._tool("occlum"), "run", "/bin/bind_abstract", name, which],
                cwd=inst.path, stdin=host_sock.fileno(), capture_output=True, text=True,
                env=env, timeout=libos.RUN_TIMEOUT, check=False,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        got.append(proc.stdout.strip())
    assert got == ["stdin: Operation not permitted", "own: bound"]
    # natively the standard input's socket takes the name on the host
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as host_sock:
        native = subprocess.run(
            [str(prog), name, "stdin"], stdin=host_sock.fileno(), capture_output=True, text=True
        )
        assert native.stdout.strip() == "stdin: bound"
