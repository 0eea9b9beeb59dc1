"""A packaged instance run by a real container engine (podman with runc; docs/deploy.md).

One instance (busybox) is built and packaged as a self-contained OCI image
(``occlum package --oci``), taken into podman's storage from the layout without a registry
(``podman pull oci:DIR:TAG``), and run with the least privilege docs/deploy.md names: a non-root
user, no capability, occlum's seccomp profile, the host's platform directory mounted. The
containers' rlimits are kept below this host's hard limits (podman's defaults exceed them).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libos import Instance

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

OCCLUM = str(Path(sys.executable).parent / "occlum")
GREETING = "greetings from the container\n"
# the image's Cmd: the image's file on stdout, a line on stderr, a status of its own
CMD = "/bin/sh -c 'cat /etc/greeting; echo to-stderr >&2; exit 3'"
UID = "1000:1000"


def _podman() -> str:
    tool = shutil.which("podman")
    if tool is None or os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("podman (with runc) cannot run here: scripts/setup.sh installs it, as root")
    done = subprocess.run([tool, "info"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"podman cannot run here: {done.stderr.strip().splitlines()[-1:]}")
    return tool


def _limits() -> list[str]:
    """Container rlimits at or below this host's hard limits."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


@dataclass
class Image:
    podman: str
    image_id: str
    profile: Path
    names: list[str]  # containers to remove at the end

    @property
    def least(self) -> list[str]:
        """The least privilege docs/deploy.md names: no capability, occlum's profile."""
        return ["--user", UID, "--security-opt", f"seccomp={self.profile}"]

    def podman_cmd(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.podman, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def run_args(
        self, platform: Path, data: Path | None = None, *, privileges: list[str] | None = None
    ) -> list[str]:
        """``podman run`` options: the least privilege (docs/deploy.md) unless ``privileges``
        replaces it; the platform directory; the SEFS volumes' directory if ``data``."""
        platform.mkdir(exist_ok=True)
        if privileges is None:
            privileges = self.least
        args = ["--runtime", "runc", *_limits(), "--pids-limit", "256", "--memory", "1g"]
        args += [*privileges, "-v", f"{platform}:/var/lib/occlum/platform:U"]
        if data is not None:
            data.mkdir(exist_ok=True)
            args += ["-v", f"{data}:/occlum_instance/run/mount:U"]
        return args

    def run(
        self, platform: Path, *argv: str, data: Path | None = None,
        privileges: list[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.podman_cmd(
            "run", "--rm", *self.run_args(platform, data, privileges=privileges),
            self.image_id, *argv,
        )  # fmt: skip

    def start(self, name: str, platform: Path, data: Path, *argv: str) -> None:
        self.names.append(name)
        done = self.podman_cmd(
            "run", "-d", "--name", name, *self.run_args(platform, data), self.image_id, *argv
        )
        assert done.returncode == 0, done.stderr

    def wait_for_log(self, name: str, text: str) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            logs = self.podman_cmd("logs", name)
            if text in logs.stdout:
                return logs.stdout
            time.sleep(0.5)
        raise AssertionError(f"{name} never logged {text!r}: {logs.stdout}{logs.stderr}")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    podman = _podman()
    work = tmp_path_factory.mktemp("container")
    inst = Instance.with_busybox(work / "boxapp", ("sh", "cat", "echo", "sleep", "ls"))
    (inst.image / "etc").mkdir(exist_ok=True)
    (inst.image / "etc" / "greeting").write_text(GREETING)
    built = inst.build()
    assert built.code == 0, built.describe()
    layout = work / "oci"
    profile = work / "occlum-seccomp.json"
    res = subprocess.run(
        [OCCLUM, "package", "--oci", str(layout), "--tag", "test", "--cmd", CMD,
         "--seccomp-profile", str(profile)],
        cwd=inst.path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    pulled = subprocess.run(
        [podman, "pull", "-q", f"oci:{layout}:test"], capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    img = Image(podman, pulled.stdout.strip().splitlines()[-1], profile, [])
    yield img
    for name in img.names:
        img.podman_cmd("rm", "-f", "-t", "0", name)
    img.podman_cmd("rmi", "-f", img.image_id)


def test_podman_runs_the_configured_program_or_the_one_given(image: Image, tmp_path: Path) -> None:
    res = image.run(tmp_path / "platform")
    assert (res.returncode, res.stdout) == (3, GREETING), res.stderr
    assert "to-stderr" in res.stderr.splitlines()
    res = image.run(tmp_path / "platform", "/bin/echo", "given", "args")
    assert (res.returncode, res.stdout) == (0, "given args\n"), res.stderr
    # no warning at start: this container grants everything the LibOS asks for
    assert "occlum-container: warning" not in res.stderr, res.stderr
    # the short path: occlum run as the container's main process, the same program and status
    res = image.run(
        tmp_path / "platform", privileges=[*image.least, "-e", "OCCLUM_CONTAINER_MODE=run"]
    )
    assert (res.returncode, res.stdout) == (3, GREETING), res.stderr


def test_sigterm_stops_the_instance_and_exec_enters_it(image: Image, tmp_path: Path) -> None:
    platform, data = tmp_path / "platform", tmp_path / "data"
    script = (
        "echo kept > /root/kept; trap 'echo got TERM; exit 5' TERM; echo ready; "
        "while true; do sleep 0.2; done"
    )
    image.start("occlum-test-serve", platform, data, "/bin/sh", "-c", script)
    image.wait_for_log("occlum-test-serve", "ready")
    # podman exec into the started instance: its files, its exit status
    done = image.podman_cmd("exec", "occlum-test-serve", "occlum", "exec", "/bin/cat", "/root/kept")
    assert (done.returncode, done.stdout) == (0, "kept\n"), done.stderr
    done = image.podman_cmd(
        "exec", "occlum-test-serve", "occlum", "exec", "/bin/sh", "-c", "exit 9"
    )
    assert done.returncode == 9, done.stderr
    # podman stop: SIGTERM reaches the program through occlum stop; its status is the container's
    stopped = image.podman_cmd("stop", "-t", "60", "occlum-test-serve")
    assert stopped.returncode == 0, stopped.stderr
    status = image.podman_cmd("inspect", "--format", "{{.State.ExitCode}}", "occlum-test-serve")
    assert status.stdout.strip() == "5"
    assert "got TERM" in image.podman_cmd("logs", "occlum-test-serve").stdout
    # the file systems were written back: another container of the image, on the same platform
    # with the same volume, reads the file
    res = image.run(platform, "/bin/cat", "/root/kept", data=data)
    assert (res.returncode, res.stdout) == (0, "kept\n"), res.stderr


def test_the_platform_is_the_hosts_and_a_volume_is_used_by_one_container(
    image: Image, tmp_path: Path
) -> None:
    platform, data = tmp_path / "platform", tmp_path / "data"
    res = image.run(platform, "/bin/sh", "-c", "echo sealed > /root/sealed", data=data)
    assert res.returncode == 0, res.stderr
    # the key and counters are the host's, not the image's
    assert sorted(os.listdir(platform)) == ["counters", "platform.key"]
    image.start("occlum-test-holder", platform, data, "/bin/sh", "-c", "echo ready; sleep 600")
    image.wait_for_log("occlum-test-holder", "ready")
    # a second container of the same volume while the first runs: refused, one line
    res = image.run(platform, "/bin/cat", "/root/sealed", data=data)
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert res.returncode == 1 and len(errors) == 1, res.stderr
    assert "in use by another running LibOS" in errors[0]
    image.podman_cmd("rm", "-f", "-t", "0", "occlum-test-holder")
    # another platform (another host) cannot open what this one sealed
    res = image.run(tmp_path / "other-platform", "/bin/cat", "/root/sealed", data=data)
    assert res.returncode == 1 and "sealed > /root/sealed" not in res.stdout
    assert "platform key" in res.stderr and "Traceback" not in res.stderr


def test_a_missing_privilege_is_named_in_one_line(image: Image, tmp_path: Path) -> None:
    platform = tmp_path / "platform"

    def refused(args: list[str], expected: str) -> None:
        done = image.podman_cmd("run", "--rm", *args, image.image_id, "/bin/echo", "no")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 126 and done.stdout == "", done.stderr
        assert len(lines) == 1 and lines[0].startswith("occlum-container: error: "), lines
        assert expected in lines[0]

    least = image.run_args(platform)
    # no platform directory from the host
    without_platform = [a for a in least if not a.endswith(":/var/lib/occlum/platform:U")]
    without_platform.remove("-v")
    refused(without_platform, "no platform directory")
    # the engine's default seccomp profile answers the loader stub's call itself
    default_profile = image.run_args(platform, privileges=["--user", UID])
    refused(default_profile, "seccomp profile")
    # root without CAP_SYS_ADMIN may not make namespaces (it makes no user namespace)
    as_root = image.run_args(platform, privileges=["--security-opt", f"seccomp={image.profile}"])
    refused(as_root, "may not create namespaces")
    # a profile that refuses Landlock: the instance runs, and says once what it lacks
    no_landlock = tmp_path / "no-landlock.json"
    profile = json.loads(image.profile.read_text())
    profile["syscalls"].append({
        "names": ["landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"],
        "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
    })  # fmt: skip
    no_landlock.write_text(json.dumps(profile))
    res = image.run(
        platform, "/bin/echo", "ran", privileges=["--user", UID, "--security-opt",
                                                  f"seccomp={no_landlock}"],
    )  # fmt: skip
    assert (res.returncode, res.stdout) == (0, "ran\n"), res.stderr
    warnings = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Landlock scopes are not available" in warnings[0], warnings
    # root with CAP_SYS_ADMIN and the profile runs
    root = ["--cap-add", "SYS_ADMIN", "--security-opt", f"seccomp={image.profile}"]
    res = image.run(platform, "/bin/echo", "as root", privileges=root)
    assert (res.returncode, res.stdout) == (0, "as root\n"), res.stderr
