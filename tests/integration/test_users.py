"""Users inside: Debian's own tools switch to an unprivileged user (util-linux's setpriv, as
init scripts and container entrypoints use it), and what that user can then do matches Linux:
the same ids, groups and capabilities as natively, and root's files refused to it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

TOOLS = ("/usr/bin/setpriv", "/usr/bin/id", "/bin/cat", "/bin/sh", "/usr/bin/touch", "/bin/ls")
# as a user: ids and groups, capabilities, root's 0600 file, a file of its own
SCRIPT = (
    "cd {}; id -u; id -g; id -G; grep -E ^Cap[IPEA] /proc/self/status; cat secret; "
    "touch mine && ls -n mine | cut -d' ' -f1,3,4; touch /etc/no"
)


def _as_user(setpriv: str, work: str) -> list[str]:
    return [setpriv, "--reuid=1000", "--regid=1000", "--groups=1000,3000",
            "--inh-caps=-all", "/bin/sh", "-c", SCRIPT.format(work)]  # fmt: skip


@pytest.fixture(scope="module")
def users_instance(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    missing = [t for t in TOOLS if not Path(t).exists()]
    if missing:
        pytest.skip(f"not installed: {missing}")
    tmp = tmp_path_factory.mktemp("users")
    inst = Instance.new(tmp / "instance")
    # under /bin, the instance's entry point
    libos.place_with_dependencies(inst.image, {"/bin/" + Path(t).name: Path(t) for t in TOOLS})
    for name in ("grep", "cut"):
        host = shutil.which(name)
        assert host is not None
        libos.place_with_dependencies(inst.image, {f"/bin/{name}": Path(host)})
    etc = inst.image / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:3000:app\n")
    work = inst.image / "work"
    work.mkdir()
    (work / "secret").write_text("root only\n")
    (work / "secret").chmod(0o600)
    work.chmod(0o777)
    cfg = inst.config()
    cfg["env"] = {"default": ["PATH=/bin:/usr/bin"], "untrusted": []}
    inst.write_config(cfg)
    inst.build()
    return inst


def test_setpriv_switches_to_a_user_as_natively(users_instance: Instance) -> None:
    # natively in a directory of /tmp (pytest's own are root's 0700, closed to the user)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "secret").write_text("root only\n")
        (work / "secret").chmod(0o600)
        work.chmod(0o777)
        native = libos.run_native(_as_user("/usr/bin/setpriv", str(work)))
    inside = users_instance.run(_as_user("/bin/setpriv", "/work"))
    assert "Traceback" not in inside.stderr, inside.describe()
    # ids, groups, capabilities (all zero for the user), the refused read, its own file
    assert inside.stdout == native.stdout, (
        f"native:\n{native.describe()}\ninside:\n{inside.describe()}"
    )
    assert "1000\n1000\n1000 3000\n" in inside.stdout
    assert inside.stderr == native.stderr  # cat's and touch's "Permission denied"
    assert inside.code == native.code != 0
