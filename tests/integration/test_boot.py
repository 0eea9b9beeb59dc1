"""The multi-stage boot: initfs/bin/init mounts the root (with the image key), then the program.

Each test builds its own instance: the default init, an encrypted image whose key is built in
or handed to `occlum run`, and custom init programs (good and bad).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")
SECRET = b"boot-secret-" + b"Q" * 20


def occlum(inst: Path, *args: str, level: str = "error") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OCCLUM, *args], cwd=inst, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "OCCLUM_LOG_LEVEL": level},
    )  # fmt: skip


def make(tmp_path: Path, name: str = "instance") -> Instance:
    inst = Instance.new(tmp_path / name)
    inst.configure()
    libos.place_with_dependencies(
        inst.image, {"/bin/sh": Path("/bin/dash"), "/bin/cat": Path("/bin/cat")}
    )
    (inst.image / "etc" / "secret.txt").write_bytes(SECRET + b"\n")
    return inst


def compile_init(tmp_path: Path, inst: Instance, body: str) -> None:
    src = tmp_path / "init.c"
    src.write_text(
        "#include <stdio.h>\n#include <errno.h>\n#include <string.h>\n#include <unistd.h>\n"
        "#include <sys/syscall.h>\nint main(void) {\n" + body + "\n}\n"
    )
    libos.compile_c(
        src, inst.path / "initfs" / "bin" / "init", libos.Variant("s", "gcc", ("-static",))
    )


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_the_default_init_mounts_the_root_then_the_program_runs(tmp_path: Path) -> None:
    inst = make(tmp_path)
    assert (inst.path / "initfs" / "bin" / "init").stat().st_mode & 0o111  # `occlum new`
    inst.build()
    script = "cat /etc/secret.txt; test -e /bin/init && echo has-init || echo no-init"
    res = occlum(inst.path, "run", "/bin/sh", "-c", script, level="trace")
    assert res.returncode == 0, res.stderr
    # the program sees the image, not the initfs
    assert res.stdout == SECRET.decode() + "\nno-init\n"
    # the trace shows the stages in order: init, its mount_rootfs, then the program
    trace = res.stderr
    assert trace.index('execve("/bin/init"') < trace.index("mount_rootfs(0x0, 0) = 0")
    assert trace.index("mount_rootfs(") < trace.index('execve("/bin/sh"')


def test_a_program_cannot_mount_the_root_again(tmp_path: Path) -> None:
    inst = make(tmp_path)
    src = tmp_path / "again.c"
    src.write_text(
        "#include <stdio.h>\n#include <errno.h>\n#include <string.h>\n#include <unistd.h>\n"
        "int main(void) { long r = syscall(363, 0, 0);"
        ' printf("%ld %s\\n", r, strerror(errno)); return 0; }\n'
    )
    libos.compile_c(src, inst.image / "bin" / "again")
    inst.build()
    res = inst.run(["/bin/again"])
    assert res.code == 0 and res.stdout == "-1 Operation not permitted\n", res.describe()


def test_an_encrypted_image_with_the_key_built_in(tmp_path: Path) -> None:
    inst = make(tmp_path)
    assert occlum(inst.path, "gen-image-key", "image_key").returncode == 0
    built = occlum(inst.path, "build", "--image-key", "image_key", "--buildin-image-key")
    assert built.returncode == 0, built.stderr
    assert SECRET not in (inst.path / "build" / "image.img").read_bytes()
    res = occlum(inst.path, "run", "/bin/cat", "/etc/secret.txt")
    assert res.returncode == 0 and res.stdout == SECRET.decode() + "\n", res.stderr
    # the key was in the initfs, for init only: the program's /etc and /dev do not hold it
    res = occlum(inst.path, "run", "/bin/sh", "-c", "cat /etc/image_key /dev/image_key")
    assert res.returncode != 0 and res.stdout == ""


def test_an_encrypted_image_with_the_key_given_to_run(tmp_path: Path) -> None:
    inst = make(tmp_path)
    assert occlum(inst.path, "gen-image-key", "image_key").returncode == 0
    assert occlum(inst.path, "gen-image-key", "other_key").returncode == 0
    built = occlum(inst.path, "build", "--image-key", "image_key")
    assert built.returncode == 0, built.stderr
    res = occlum(inst.path, "run", "--image-key", "image_key", "/bin/cat", "/etc/secret.txt")
    assert res.returncode == 0 and res.stdout == SECRET.decode() + "\n", res.stderr
    # no key, the wrong key, a file that is not a key: one line each, nothing run
    line = one_error_line(occlum(inst.path, "run", "/bin/cat", "/etc/secret.txt"))
    assert "cannot mount the root file system" in line and "image key" in line
    res = occlum(inst.path, "run", "--image-key", "other_key", "/bin/cat", "/etc/secret.txt")
    assert "wrong image key" in one_error_line(res) and res.stdout == ""
    (inst.path / "not_a_key").write_text("hello\n")
    res = occlum(inst.path, "run", "--image-key", "not_a_key", "/bin/cat", "/etc/secret.txt")
    assert "not an image key" in one_error_line(res)
    res = occlum(inst.path, "run", "--image-key", "missing", "/bin/cat", "/etc/secret.txt")
    assert "does not exist" in one_error_line(res)
    # the failed attempts damaged nothing
    res = occlum(inst.path, "run", "--image-key", "image_key", "/bin/cat", "/etc/secret.txt")
    assert res.returncode == 0 and res.stdout == SECRET.decode() + "\n", res.stderr


def test_a_custom_init_that_mounts_the_root(tmp_path: Path) -> None:
    inst = make(tmp_path)
    compile_init(
        tmp_path,
        inst,
        'printf("custom init, pid %d\\n", (int)getpid()); fflush(stdout);\n'
        'if (access("/etc/secret.txt", F_OK) == 0) return 9;  /* the image is not mounted yet */\n'
        "return syscall(363, NULL, 0) == 0 ? 0 : 1;",
    )
    inst.build()
    res = inst.run(["/bin/cat", "/etc/secret.txt"])
    assert res.code == 0, res.describe()
    assert res.stdout.startswith("custom init, pid ")
    assert res.stdout.endswith(SECRET.decode() + "\n")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("return 0;", "exited with status 0 without mounting the root file system"),
        (
            "syscall(363, NULL, 0); return 5;",
            "mounted the root file system but exited with status 5",
        ),
        ("char k[16] = {0}; syscall(363, k, 16); return 0;", "cannot mount the root file system"),
        ("*(volatile int *)0 = 1; return 0;", "was killed by SIGSEGV"),
    ],
    ids=["no-mount", "bad-status", "key-for-plain-image", "crash"],
)
def test_a_failing_custom_init_stops_the_boot(tmp_path: Path, body: str, says: str) -> None:
    inst = make(tmp_path)
    compile_init(tmp_path, inst, body)
    inst.build()
    res = occlum(inst.path, "run", "/bin/cat", "/etc/secret.txt")
    lines = [ln for ln in res.stderr.splitlines() if "killed by" not in ln or "init (" in ln]
    assert res.returncode != 0 and res.stdout == "", res.stderr
    assert any(says in ln for ln in lines), res.stderr
    assert "Traceback" not in res.stderr


def test_an_instance_without_init_gets_the_default_back_at_build(tmp_path: Path) -> None:
    inst = make(tmp_path)
    (inst.path / "initfs" / "bin" / "init").unlink()
    built = inst.build()
    assert "default init was put there" in built.stdout + built.stderr
    res = inst.run(["/bin/cat", "/etc/secret.txt"])
    assert res.code == 0 and res.stdout == SECRET.decode() + "\n", res.describe()
