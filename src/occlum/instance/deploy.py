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
from occlum.syscalls.refused import REFUSED

__all__ = ["SUPERVISOR_CALLS", "seccomp_profile", "seccomp_profile_text", "write_seccomp_profile"]

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
