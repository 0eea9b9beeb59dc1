"""Scale-out demo: replicas of one packaged web server, started by ``podman kube play`` from one
manifest (``occlum package --k8s --replicas N``), each an instance of its own with its own SEFS
volume, all reachable on the host's loopback, driven by one load generator (wrk): the combined
throughput of N replicas against one.

    .venv/bin/python bench/scale_out.py [--replicas 3] [--seconds 5] [--connections 8]

Each replica is lighttpd serving a 1 KiB page from the root's SEFS layer (each replica's
program copies it there from the image when it starts: every replica serves its own volume).
"One" is wrk against replica 0 alone (the others idle) with ``--connections``; "one, N times the
load" the same replica with N times the connections; "combined" one wrk per replica at once,
each with ``--connections``, their rates summed. With ``--attest`` the root image is encrypted
and each replica boots attested (``occlum build --init-ra``): its init gets the image key from
``occlum kbs serve`` on the host against a quote of the node's platform, and the broker's log
counts the releases. Needs root, podman with runc, catatonit and wrk (``scripts/setup.sh``).
The results are printed and written to bench/out/scale_out.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(REPO / "tests"))

import libos  # noqa: E402  (the test harness: instances)

NAME = "occlumscale"
PORT = 8080  # inside each pod
OCCLUM = str(Path(sys.executable).parent / "occlum")
CONF = """server.document-root = "/root/www"
server.port = {port}
server.bind = "0.0.0.0"
server.upload-dirs = ( "/tmp" )
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html" )
"""
# the page goes into the root's writable (SEFS) layer, then lighttpd serves it from there
PROGRAM = (
    "/bin/sh -c 'mkdir -p /root/www; cp /www/index.html /root/www/index.html; "
    "exec /bin/lighttpd -D -f /etc/lighttpd.conf'"
)


def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} ... failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def free_base_port(n: int) -> int:
    for base in range(18080, 30000, 10):
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise SystemExit("no free ports")


def wait_for(port: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.0 200"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"replica on port {port} never served")


def wrk(port: int, seconds: int, connections: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def rate(proc: subprocess.Popen[str]) -> float:
    out, err = proc.communicate()
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise SystemExit(f"wrk: no rate in its output: {out}{err}")


def podman_gateway() -> str:
    """An address of the host on a podman bridge, which the pods reach (the init of attested
    boot resolves no names: the URL holds an IPv4 address)."""
    out = run("podman", "network", "inspect", "podman",
              "--format", "{{range .Subnets}}{{.Gateway}}{{end}}")  # fmt: skip
    return out.strip()


class Broker:
    """``occlum kbs serve`` for the replicas: the image key of the instance, released to its
    MRENCLAVE against a quote of the node's platform (whose key the pods mount)."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.env = env
        self.store = work / "kbs-store"
        self.root = work / "platform-root.pem"
        self.key = work / "image_key"
        self.root.write_text(run(OCCLUM, "print", "platform-root", env=env))
        run(OCCLUM, "gen-image-key", str(self.key), env=env)
        self.port = free_base_port(1)
        self.log = (work / "kbs.log").open("w")
        self.proc: subprocess.Popen[str] | None = None

    def start(self, mrenclave: str) -> None:
        run(OCCLUM, "kbs", "add-secret", "--store", str(self.store), "scale", "--from-file",
            str(self.key), "--mrenclave", mrenclave, env=self.env)  # fmt: skip
        # on every address: the pods reach the host at podman's gateway
        self.proc = subprocess.Popen(
            [OCCLUM, "kbs", "serve", "--store", str(self.store), "--listen",
             f"0.0.0.0:{self.port}", "--root-cert", str(self.root)],
            stdout=self.log, stderr=self.log, text=True, env=self.env,
        )  # fmt: skip
        # it logs one line per decision on its stdout, the first when it listens
        deadline = time.monotonic() + 60
        while "listening on" not in Path(self.log.name).read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"occlum kbs serve failed: {Path(self.log.name).read_text()}")
            time.sleep(0.2)

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
        return Path(self.log.name).read_text()


def build(work: Path, attest: Broker | None = None) -> libos.Instance:
    inst = libos.Instance.with_busybox(work / NAME, ("sh", "mkdir", "cp"))
    libos.place_with_dependencies(inst.image, {"/bin/lighttpd": Path("/usr/sbin/lighttpd")})
    (inst.image / "www").mkdir(parents=True, exist_ok=True)
    (inst.image / "www" / "index.html").write_text("<html>" + "x" * 1011 + "</html>\n")
    (inst.image / "etc").mkdir(exist_ok=True)
    (inst.image / "etc" / "lighttpd.conf").write_text(CONF.format(port=PORT))
    if attest is None:
        inst.build()
        return inst
    # attested boot: the root image encrypted, its key only with the broker (docs/attestation.md)
    url = f"http://{podman_gateway()}:{attest.port}#scale"
    run(OCCLUM, "--instance-dir", str(inst.path), "build", "--image-key", str(attest.key),
        "--init-ra", url, env=attest.env)  # fmt: skip
    mrenclave = run(OCCLUM, "--instance-dir", str(inst.path), "print", "mrenclave").strip()
    attest.start(mrenclave)
    return inst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument(
        "--attest", action="store_true",
        help="attested boot: each replica gets its image key from the key broker",
    )  # fmt: skip
    opts = ap.parse_args()
    for tool in ("podman", "runc", "catatonit", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/setup.sh installs it)")
    if os.geteuid() != 0:
        raise SystemExit("the demo runs podman as root")
    n = opts.replicas
    work = OUT / "scale_out"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    print(f"building and packaging the instance in {work} ...", flush=True)
    platform = work / "platform"
    platform.mkdir(mode=0o700)
    broker = None
    if opts.attest:
        env = {**os.environ, "OCCLUM_PLATFORM_KEY": str(platform / "platform.key")}
        broker = Broker(work, env)
    inst = build(work, broker)
    base = free_base_port(n)
    for path in [platform, *platform.rglob("*")]:  # the node's platform, the pods' user's
        os.chown(path, 1000, 1000)
    seccomp_root = work / "seccomp"
    seccomp_root.mkdir()
    manifest = work / "scale.yaml"
    image = f"localhost/{NAME}:demo"
    os.chdir(inst.path)
    run(OCCLUM, "package", "--oci", str(work / "oci"), "--tag", "demo", "--cmd", PROGRAM,
        "--k8s", str(manifest), "--image", image, "--port", str(PORT), "--replicas", str(n),
        "--platform-dir", str(platform),
        "--seccomp-profile", str(seccomp_root / "occlum-seccomp.json"))  # fmt: skip
    # the published ports: PORT+i in the manifest; here a free range of the host instead
    text = manifest.read_text()
    for i in reversed(range(n)):
        text = text.replace(f"hostPort: {PORT + i}\n", f"hostPort: {base + i}\n")
    manifest.write_text(text)
    conf = work / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    image_id = run("podman", "pull", "-q", f"oci:{work / 'oci'}:demo", env=env).split()[-1]
    run("podman", "tag", image_id, image, env=env)
    volumes = [f"{NAME}-{i}-data" for i in range(n)]
    subprocess.run(["podman", "volume", "rm", "-f", *volumes], env=env, capture_output=True)
    try:
        started = time.monotonic()
        run("podman", "kube", "play", "--seccomp-profile-root", str(seccomp_root),
            str(manifest), env=env)  # fmt: skip
        for i in range(n):
            wait_for(base + i)
        print(f"{n} replicas serving on ports {base}..{base + n - 1} after "
              f"{time.monotonic() - started:.1f} s", flush=True)  # fmt: skip
        for i in range(n):  # warm-up: every replica's first requests
            rate(wrk(base + i, 1, 2))
        one = rate(wrk(base, opts.seconds, opts.connections))
        one_loaded = rate(wrk(base, opts.seconds, opts.connections * n))
        procs = [wrk(base + i, opts.seconds, opts.connections) for i in range(n)]
        each = [rate(p) for p in procs]
    finally:
        if broker is not None:
            released = broker.stop().count("released")
            print(f"the key broker released the image key {released} times", flush=True)
        subprocess.run(["podman", "kube", "down", str(manifest)], env=env, capture_output=True)
        subprocess.run(["podman", "volume", "rm", "-f", *volumes], env=env, capture_output=True)
        subprocess.run(["podman", "rmi", "-f", image_id], env=env, capture_output=True)
    combined = sum(each)
    result = {
        "replicas": n, "seconds": opts.seconds, "connections": opts.connections,
        "cpus": os.cpu_count(), "one_rps": one, f"one_{n}x_connections_rps": one_loaded,
        "combined_rps": combined, "each_rps": each, "speedup": combined / one if one else 0.0,
    }  # fmt: skip
    (OUT / "scale_out.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"lighttpd in the LibOS, 1 KiB page, wrk -t1 -c{opts.connections} "
          f"-d{opts.seconds}s per replica ({os.cpu_count()} CPUs)")  # fmt: skip
    print(f"  one replica:                    {one:10.0f} requests/s")
    print(f"  one replica, {n}x the connections: {one_loaded:10.0f} requests/s")
    print(f"  {n} replicas combined:            {combined:10.0f} requests/s "
          f"({' + '.join(f'{r:.0f}' for r in each)}), {combined / one:.2f}x one")  # fmt: skip


if __name__ == "__main__":
    main()
