"""What a container engine needs to run a packaged instance: the seccomp profile of the
container (see docs/deploy.md, "Privileges").

A container engine confines the container's processes with a seccomp filter of its own, and the
kernel runs every filter of a process: the strictest answer wins, and an error answer wins over
a user notification. Two consequences shape the profile:

- The engines' default profiles answer every system call they do not list with ``ENOSYS``. The
  loader stub's private call (:data:`occlum.platform.stub.STUB_NR`, a number no kernel defines)
  is such a call, so under a default profile every ``execve`` inside the LibOS fails (the
  program exits with status 127). A profile names calls, not numbers, so the profile allows by
  default and lists what it refuses.
- A call the profile refuses is refused to the programs even where the LibOS would serve it.
  The profile therefore refuses only calls that the LibOS refuses to its programs too
  (:data:`occlum.syscalls.refused.REFUSED`, with the same errno, so a program sees the same
  answer either way), less those the LibOS itself makes (:data:`SUPERVISOR_CALLS`): the
  container's filter then confines the LibOS's own process as well, and programs see nothing
  of it.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from occlum.errors import UserError
from occlum.instance.config import OcclumConfig
from occlum.syscalls.refused import REFUSED

__all__ = [
    "SUPERVISOR_CALLS",
    "k8s_manifest",
    "seccomp_profile",
    "seccomp_profile_text",
    "write_seccomp_profile",
]

# calls the LibOS refuses to programs but makes itself (platform/: the namespaces and the empty
# root of an instance, its devpts mount, descriptors taken from a program, file-change
# watches, its Landlock domain); and clone3, which C libraries try before clone
SUPERVISOR_CALLS = frozenset({
    "unshare", "setns", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
    "move_mount", "mount_setattr", "pidfd_getfd", "process_vm_readv", "process_vm_writev",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "clone3",
})  # fmt: skip


def seccomp_profile() -> dict[str, Any]:
    """The container's seccomp profile (the OCI/Docker JSON format podman, Docker and the
    kubelet read): allow, except the calls refused inside the LibOS and not needed by it."""
    by_errno: dict[int, list[str]] = {}
    for name, (err, _why) in REFUSED.items():
        if name not in SUPERVISOR_CALLS:
            by_errno.setdefault(err, []).append(name)
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {
                "names": sorted(names),
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": err,
                "comment": f"refused inside the LibOS too, with {errno.errorcode[err]}",
            }
            for err, names in sorted(by_errno.items())
        ],
    }


def seccomp_profile_text() -> str:
    return json.dumps(seccomp_profile(), indent=2, sort_keys=True) + "\n"


def write_seccomp_profile(path: Path) -> None:
    try:
        path.write_text(seccomp_profile_text())
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}")


# --- a Kubernetes manifest ---------------------------------------------------------------------

PROFILE_NAME = (
    "occlum-seccomp.json"  # under the kubelet's seccomp root (podman: --seccomp-profile-root)
)
RUN_AS = (
    1000  # the pod's user: not root, so the LibOS makes a user namespace and needs no capability
)
# the LibOS itself beside the programs' memory: the interpreter, the page cache of the image
LIBOS_MEMORY = 256 << 20
MIB = 1 << 20


def _mebibytes(n: int) -> str:
    return f"{-(-n // MIB)}Mi"


def k8s_manifest(
    *,
    name: str,
    image: str,
    config: OcclumConfig,
    args: list[str],
    port: int | None,
    platform_dir: str,
    mrenclave: str,
    replicas: int = 1,
) -> str:
    """Deployments of one pod each running the image with the least privilege
    (docs/deploy.md), as YAML: ``NAME``, or ``NAME-0`` ... ``NAME-<replicas-1>``, each an
    instance of its own with its SEFS volumes on the claim ``<its name>-data`` (a volume is
    used by one running LibOS at a time) and its port published on the node as ``port + i``.
    Claims are not in the manifest: podman creates the volume of a claim on first use (owned
    by the pod's user) and its ``kube play`` refuses a manifest whose claim exists already; a
    cluster needs them made once (docs/deploy.md)."""
    import yaml

    docs = []
    for i in range(replicas):
        one = name if replicas == 1 else f"{name}-{i}"
        host_port = None if port is None else port + i
        docs.append(_deployment(one, image, config, args, port, host_port, platform_dir, mrenclave))
    return yaml.safe_dump_all(docs, sort_keys=False)


def _deployment(
    name: str, image: str, config: OcclumConfig, args: list[str], port: int | None,
    host_port: int | None, platform_dir: str, mrenclave: str,
) -> dict[str, Any]:  # fmt: skip
    limits = config.resource_limits
    user = max(limits.user_space_size, limits.user_space_max_size or 0)
    heap = max(limits.kernel_space_heap_size, limits.kernel_space_heap_max_size or 0)
    memory = _mebibytes(user + heap + LIBOS_MEMORY)
    claim = f"{name}-data"
    # the instance is up when its server answers (occlum ps); ready when its port accepts
    alive: dict[str, Any] = {"exec": {"command": ["occlum", "ps"]}}
    ready: dict[str, Any] = {"tcpSocket": {"port": port}} if port is not None else alive
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "workingDir": "/occlum_instance",
        "securityContext": {
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            # user_space_size and the kernel heap of Occlum.json, and the LibOS itself
            "requests": {"memory": memory},
            "limits": {"memory": memory},
        },
        "volumeMounts": [
            {"name": "occlum-platform", "mountPath": "/var/lib/occlum/platform"},
            {"name": "data", "mountPath": "/occlum_instance/run/mount"},
        ],
        "livenessProbe": {**alive, "initialDelaySeconds": 5, "periodSeconds": 10,
                          "timeoutSeconds": 5, "failureThreshold": 3},
        "readinessProbe": {**ready, "initialDelaySeconds": 2, "periodSeconds": 5,
                           "timeoutSeconds": 5},
    }  # fmt: skip
    if args:
        container["args"] = args
    if port is not None:
        container["ports"] = [{"containerPort": port, "hostPort": host_port, "protocol": "TCP"}]
    if limits.num_of_cpus:
        container["resources"]["limits"]["cpu"] = str(limits.num_of_cpus)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            # one pod at a time: the SEFS volumes are used by one running LibOS at a time
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {
                        "occlum.mrenclave": mrenclave,
                        # max_num_of_threads is the node's pod pids limit (kubelet podPidsLimit)
                        "occlum.max_num_of_threads": str(limits.max_num_of_threads),
                        # podman kube play reads the profile from this annotation
                        "seccomp.security.alpha.kubernetes.io/pod": f"localhost/{PROFILE_NAME}",
                    },
                },
                "spec": {
                    "securityContext": {
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "Localhost", "localhostProfile": PROFILE_NAME},
                    },
                    "terminationGracePeriodSeconds": 10,
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "occlum-platform",
                            "hostPath": {"path": platform_dir, "type": "DirectoryOrCreate"},
                        },
                        {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
                    ],
                },
            },
        },
    }
    return deployment
