"""RA-TLS end to end (examples/ratls): a Python HTTPS server inside an instance presents a
certificate carrying a quote of its enclave over its key; the host client accepts it only if
the quote verifies and MRENCLAVE is ``occlum print mrenclave``'s, and refuses, with one line
naming the check, a server whose image changed by one byte and a certificate whose key is not
the one the quote binds (a genuine quote replayed on another key)."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from libos import REPO, Instance, Result
from occlum.crypto.ratls import certificate_with_quote, new_key, read_certificate

EXAMPLE = REPO / "examples" / "ratls"
OCCLUM = str(Path(sys.executable).parent / "occlum")
SRC = REPO / "src" / "occlum"
MESSAGE = "hello from inside the enclave\n"

pytestmark = pytest.mark.needs_root


@dataclass
class Setup:
    work: Path
    inst: Instance
    env: dict[str, str]
    root: Path  # the platform's root certificate
    mrenclave: str


def occlum(args: list[str], env: dict[str, str], cwd: Path | None = None) -> Result:
    proc = subprocess.run([OCCLUM, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, f"occlum {args}: {proc.stderr}"
    return Result(proc.returncode, proc.stdout, proc.stderr)


def make_instance(path: Path, env: dict[str, str], motd: str) -> tuple[Instance, str]:
    """The example's instance (its bom.yaml), plus /app/motd.txt holding ``motd``."""
    inst = Instance.new(path)
    inst.configure(entry_points=["/bin", "/usr/bin"])
    bom = yaml.safe_load((EXAMPLE / "bom.yaml").read_text())
    saved = {k: os.environ.get(k) for k in ("OCCLUM_SRC", "RATLS_EXAMPLE")}
    os.environ.update(OCCLUM_SRC=str(SRC), RATLS_EXAMPLE=str(EXAMPLE))
    try:
        inst.copy_bom(bom)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (inst.image / "app" / "motd.txt").write_text(motd)
    occlum(["build"], env, cwd=path)
    return inst, occlum(["print", "mrenclave"], env, cwd=path).stdout.strip()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("ratls")
    env = dict(os.environ, OCCLUM_PLATFORM_KEY=str(work / "platform" / "platform.key"))
    inst, mrenclave = make_instance(work / "instance", env, "version 1\n")
    root = work / "root.pem"
    root.write_text(occlum(["print", "platform-root"], env).stdout)
    yield Setup(work, inst, env, root, mrenclave)
    shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(inst: Instance, env: dict[str, str], requests: int) -> Iterator[int]:
    """The example server inside ``inst``, serving ``requests`` requests on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        [OCCLUM, "run", "/usr/bin/python3", "/app/server.py", str(port), str(requests)],
        cwd=inst.path, env=dict(env, OCCLUM_LOG_LEVEL="error"), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=120):
            raise AssertionError("the server inside did not start in 120 s")
        line = proc.stdout.readline().decode()
        assert line == f"RA-TLS server listening on port {port}\n", line + (
            proc.stderr.read().decode() if proc.stderr else ""
        )
        yield port
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def client(port: int, root: Path, mrenclave: str) -> Result:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "client.py"), "--root", str(root),
         "--mrenclave", mrenclave, "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


def peer_certificate(port: int) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=60) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return der


def test_client_accepts_the_real_server_and_refuses_another_measurement(setup: Setup) -> None:
    with server(setup.inst, setup.env, requests=2) as port:
        ok = client(port, setup.root, setup.mrenclave)
        assert (ok.code, ok.stdout) == (0, MESSAGE), ok.describe()
        assert f"server attested, MRENCLAVE {setup.mrenclave}" in ok.stderr
        wrong = client(port, setup.root, "00" * 32)
    assert wrong.code == 1 and wrong.stdout == "", wrong.describe()
    assert wrong.stderr == (
        f"client: RA-TLS quote refused: MRENCLAVE {setup.mrenclave} is not the expected "
        f"{'00' * 32}\n"
    )


def test_client_refuses_a_server_whose_image_changed(setup: Setup) -> None:
    changed, mrenclave = make_instance(setup.work / "changed", setup.env, "version 2\n")
    assert mrenclave != setup.mrenclave
    try:
        with server(changed, setup.env, requests=1) as port:
            res = client(port, setup.root, setup.mrenclave)
        assert res.code == 1 and res.stdout == "", res.describe()
        assert res.stderr == (
            f"client: RA-TLS quote refused: MRENCLAVE {mrenclave} is not the expected "
            f"{setup.mrenclave}\n"
        )
    finally:
        shutil.rmtree(changed.path, ignore_errors=True)


def test_client_refuses_a_genuine_quote_on_another_key(setup: Setup) -> None:
    """An attacker on the host replays the real server's quote in a certificate of its own key:
    the quote verifies and names the right enclave, but does not bind that key."""
    with server(setup.inst, setup.env, requests=1) as port:
        genuine = peer_certificate(port)
    forged = certificate_with_quote(new_key(), read_certificate(genuine).quote)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (setup.work / "forged.pem").write_bytes(forged.cert_pem)
    (setup.work / "forged.key").write_bytes(forged.key_pem)
    ctx.load_cert_chain(setup.work / "forged.pem", setup.work / "forged.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)  # the client closes without sending

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    try:
        res = client(port, setup.root, setup.mrenclave)
    finally:
        thread.join(timeout=30)
        listener.close()
    assert res.code == 1 and res.stdout == "", res.describe()
    assert res.stderr == (
        "client: RA-TLS certificate refused: the quote's report data does not bind the "
        "certificate's public key (it was quoted for another key)\n"
    )
