"""``occlum package --k8s``: the generated Deployment, played by ``podman kube play``.

An instance serving HTTP (busybox httpd, from a page kept in the root's SEFS layer) is packaged
as an image and a manifest, played, probed (the liveness probe, as podman runs it), served, torn
down and played again: the page written in the first pod is served by the second.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from libos import Instance

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

OCCLUM = str(Path(sys.executable).parent / "occlum")
NAME = "occlumkubetest"  # the instance directory: the Deployment, its pod and its claim
SERVE = (
    "mkdir -p /root/www; [ -f /root/www/index.html ] || echo first > /root/www/index.html; "
    "exec /bin/httpd -f -p {port} -h /root/www"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Kube:
    podman: str
    manifest: Path
    seccomp_root: Path
    env: dict[str, str]
    port: int
    image: str

    def podman_cmd(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.podman, *args], capture_output=True, text=True, timeout=timeout,
            env=self.env, check=False,
        )  # fmt: skip

    def play(self) -> None:
        done = self.podman_cmd(
            "kube", "play", "--seccomp-profile-root", str(self.seccomp_root), str(self.manifest)
        )
        assert done.returncode == 0, done.stderr

    def down(self) -> None:
        self.podman_cmd("kube", "down", str(self.manifest))

    def get(self) -> str:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5) as r:
                    return str(r.read().decode())
            except OSError:
                if time.monotonic() > deadline:
                    logs = self.podman_cmd("logs", f"{NAME}-pod-0-{NAME}")
                    raise AssertionError(f"the pod never served: {logs.stdout}{logs.stderr}")
                time.sleep(0.5)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    podman = shutil.which("podman")
    if podman is None or os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("podman (with runc) cannot run here: scripts/setup.sh installs it, as root")
    if shutil.which("catatonit") is None:
        pytest.skip("podman kube play needs catatonit for its pods: scripts/setup.sh installs it")
    work = tmp_path_factory.mktemp("kube")
    inst = Instance.with_busybox(work / NAME, ("sh", "cat", "echo", "mkdir", "httpd"))
    inst.build()
    port = _free_port()
    seccomp_root = work / "seccomp"
    seccomp_root.mkdir()
    platform = work / "platform"  # the node's, owned by the pods' user (deploy.md)
    platform.mkdir(mode=0o700)
    os.chown(platform, 1000, 1000)
    image = f"localhost/{NAME}:test"
    manifest = work / "app.yaml"
    res = subprocess.run(
        [OCCLUM, "package", "--oci", str(work / "oci"), "--tag", "test",
         "--cmd", f"/bin/sh -c '{SERVE.format(port=port)}'", "--k8s", str(manifest),
         "--image", image, "--port", str(port), "--platform-dir", str(platform),
         "--seccomp-profile", str(seccomp_root / "occlum-seccomp.json")],
        cwd=inst.path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    # the engine's default rlimits exceed this host's hard limits, and kube play has no
    # --ulimit: a containers.conf of the test's own sets them (and runc, as deploy.md says)
    conf = work / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    k = Kube(podman, manifest, seccomp_root, env, port, image)
    pulled = k.podman_cmd("pull", "-q", f"oci:{work / 'oci'}:test")
    assert pulled.returncode == 0, pulled.stderr
    image_id = pulled.stdout.strip().splitlines()[-1]
    assert k.podman_cmd("tag", image_id, image).returncode == 0
    k.podman_cmd("volume", "rm", "-f", f"{NAME}-data")
    yield k
    k.down()
    k.podman_cmd("volume", "rm", "-f", f"{NAME}-data")
    k.podman_cmd("rmi", "-f", image_id)


def test_the_manifest_asks_for_the_least_privilege_and_occlum_json_s_memory(kube: Kube) -> None:
    doc = yaml.safe_load(kube.manifest.read_text())
    assert doc["kind"] == "Deployment" and doc["spec"]["strategy"] == {"type": "Recreate"}
    pod = doc["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {
        "type": "Localhost", "localhostProfile": "occlum-seccomp.json"
    }  # fmt: skip
    [container] = pod["containers"]
    assert container["image"] == kube.image
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # user_space_size (300MB) + kernel_space_heap_size (32MB) of Occlum.json + the LibOS (256MiB)
    assert container["resources"]["limits"]["memory"] == f"{300 + 32 + 256}Mi"
    assert container["readinessProbe"]["tcpSocket"] == {"port": kube.port}
    assert container["livenessProbe"]["exec"] == {"command": ["occlum", "ps"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    platform = volumes[mounts["/var/lib/occlum/platform"]]["hostPath"]["path"]
    assert Path(platform).name == "platform"
    claim = volumes[mounts["/occlum_instance/run/mount"]]["persistentVolumeClaim"]
    assert claim == {"claimName": f"{NAME}-data"}


def test_kube_play_serves_passes_its_probe_and_keeps_its_data(kube: Kube) -> None:
    kube.play()
    assert kube.get() == "first\n"
    container = f"{NAME}-pod-0-{NAME}"
    # the liveness probe, as podman runs it (a health check)
    health = kube.podman_cmd("healthcheck", "run", container)
    assert health.returncode == 0, health.stdout + health.stderr
    done = kube.podman_cmd(
        "exec", container, "occlum", "exec", "/bin/sh", "-c", "echo second > /root/www/index.html"
    )
    assert done.returncode == 0, done.stderr
    assert kube.get() == "second\n"
    kube.down()
    # the pod is gone, its claim stays; a second play serves what the first wrote
    assert kube.podman_cmd("container", "exists", container).returncode == 1
    kube.play()
    assert kube.get() == "second\n"
    kube.down()
