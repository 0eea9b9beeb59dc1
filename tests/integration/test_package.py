"""`occlum package`: a built instance as an archive that runs elsewhere, and as an OCI image.

The "other machine" is another directory with a platform key of its own
(``OCCLUM_PLATFORM_KEY``): what the package needs there, and what it must not carry (run-time
state, the SEFS volumes sealed to the first platform, the signing key, the staged plaintext).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")
GREETING = b"greetings from the packaged instance\n"
# what the program prints: the image's file, its arguments, and /root, where every run leaves
# a note in the root's writable (SEFS) layer: a package that carried run/ would show it
SCRIPT = 'cat /etc/greeting; echo "args: $*"; ls /root; echo note > /root/note-$$; exit 7'
ARCHIVE_ENTRIES = {
    "",
    "/.__occlum_status",
    "/Occlum.json",
    "/build",
    "/build/image",
    "/build/Occlum.json.built",
    "/build/image_hashes.json",
    "/build/sigstruct.json",
    "/build/image.img",
    "/build/initfs.img",
}
ENTRYPOINT = ["occlum", "--instance-dir", "/occlum_instance", "run"]


def occlum(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OCCLUM, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "error", **(env or {})},
    )  # fmt: skip


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("occlum: error: ")
    return lines[0]


def make(path: Path, *, debuggable: bool) -> Instance:
    inst = Instance.new(path)
    inst.configure()
    cfg = inst.config()
    metadata = cfg["metadata"]
    assert isinstance(metadata, dict) and metadata["debuggable"] is True  # Occlum's default
    metadata["debuggable"] = debuggable
    inst.write_config(cfg)
    libos.place_with_dependencies(
        inst.image,
        {"/bin/sh": Path("/bin/dash"), "/bin/cat": Path("/bin/cat"), "/bin/ls": Path("/bin/ls")},
    )
    (inst.image / "etc" / "greeting").write_bytes(GREETING)
    return inst


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    """A built instance that is not debuggable, named ``myapp``."""
    inst = make(tmp_path_factory.mktemp("release") / "myapp", debuggable=False)
    inst.build()
    return inst


@pytest.fixture(scope="module")
def debuggable(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    """A built instance with Occlum.json's default metadata.debuggable (true)."""
    inst = make(tmp_path_factory.mktemp("debuggable") / "dbgapp", debuggable=True)
    inst.build()
    return inst


def other_machine(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine with a platform key of its own."""
    return {"OCCLUM_PLATFORM_KEY": str(tmp_path / "other-machine" / "platform.key")}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the archive ------------------------------------------------------------------------------


def test_an_unpacked_package_runs_with_the_same_output_and_status(
    release: Instance, tmp_path: Path
) -> None:
    shutil.rmtree(release.path / "run", ignore_errors=True)  # as freshly built
    here = occlum(release.path, "run", "/bin/sh", "-c", SCRIPT, "sh", "a b", "c")
    assert here.returncode == 7, here.stderr
    assert here.stdout == GREETING.decode() + "args: a b c\n"  # /root was empty
    # the run left a note in run/mount/__ROOT: it must not travel
    assert any((release.path / "run" / "mount" / "__ROOT").iterdir())

    out = tmp_path / "out"
    out.mkdir()
    res = occlum(out, "--instance-dir", str(release.path), "package")
    assert res.returncode == 0, res.stderr
    archive = out / "myapp.tar.gz"  # the default name, in the current directory
    assert os.listdir(out) == ["myapp.tar.gz"]
    assert str(archive) in res.stdout

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["tar", "xzf", str(archive)], cwd=elsewhere, check=True)
    assert os.listdir(elsewhere) == ["myapp"]  # one top-level directory
    unpacked = elsewhere / "myapp"
    env = other_machine(tmp_path)
    there = occlum(unpacked, "run", "/bin/sh", "-c", SCRIPT, "sh", "a b", "c", env=env)
    assert (there.returncode, there.stdout) == (here.returncode, here.stdout), there.stderr
    # the target sealed its own writable layer with its own platform key
    assert Path(env["OCCLUM_PLATFORM_KEY"]).is_file()
    assert (unpacked / "run" / "mount" / "__ROOT" / "superblock").is_file()
    # and the package never needed the source tree, nor the built one
    assert not (unpacked / "image").exists() and not (unpacked / "initfs").exists()


def test_the_archive_holds_what_run_needs_and_is_deterministic(
    release: Instance, tmp_path: Path
) -> None:
    first, second = tmp_path / "one.tar.gz", tmp_path / "two.tar.gz"
    for name in (first, tmp_path / "two"):  # as in Occlum, .tar.gz is added when missing
        res = occlum(release.path, "package", str(name))
        assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(tmp_path)) == ["one.tar.gz", "two.tar.gz"]
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {n.removeprefix("myapp") for n in names} == ARCHIVE_ENTRIES
    assert all(n == "myapp" or n.startswith("myapp/") for n in names)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert len({m.mtime for m in members}) == 1
    # the signing key stays home; so do the build caches and the staged root
    assert (release.path / "build" / "dev_signing_key.pem").is_file()
    assert (release.path / "build" / "image" / "etc" / "greeting").is_file()
    # $SOURCE_DATE_EPOCH sets the time of every entry
    res = occlum(release.path, "package", str(first), env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert res.returncode == 0, res.stderr
    with tarfile.open(first) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


def test_the_plaintext_of_an_encrypted_build_is_not_packaged(tmp_path: Path) -> None:
    inst = make(tmp_path / "secretapp", debuggable=False)
    assert occlum(inst.path, "gen-image-key", "image_key").returncode == 0
    built = occlum(inst.path, "build", "--image-key", "image_key", "--buildin-image-key")
    assert built.returncode == 0, built.stderr
    res = occlum(tmp_path, "--instance-dir", str(inst.path), "package")
    assert res.returncode == 0, res.stderr
    assert "encrypted" in res.stderr  # the note about the key
    archive = tmp_path / "secretapp.tar.gz"
    assert GREETING not in gzip.decompress(archive.read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["tar", "xzf", str(archive)], cwd=elsewhere, check=True)
    there = occlum(
        elsewhere / "secretapp", "run", "/bin/cat", "/etc/greeting", env=other_machine(tmp_path)
    )
    assert there.returncode == 0 and there.stdout == GREETING.decode(), there.stderr


def test_hostfs_directories_inside_the_instance_travel_empty(tmp_path: Path) -> None:
    inst = make(tmp_path / "hostapp", debuggable=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    cfg = inst.config()
    mounts = cfg["mount"]
    assert isinstance(mounts, list)
    mounts += [
        {"target": "/data", "type": "hostfs", "source": "./share/data"},
        {"target": "/outside", "type": "hostfs", "source": str(outside)},
    ]
    inst.write_config(cfg)
    (inst.image / "data").mkdir()
    (inst.image / "outside").mkdir()
    (inst.path / "share" / "data").mkdir(parents=True)
    (inst.path / "share" / "data" / "host.txt").write_text("host data\n")
    inst.build()
    res = occlum(tmp_path, "--instance-dir", str(inst.path), "package")
    assert res.returncode == 0, res.stderr
    assert f"the host directory {outside} is outside the instance" in res.stderr
    with tarfile.open(tmp_path / "hostapp.tar.gz") as tar:
        dirs = {m.name for m in tar.getmembers() if m.isdir()}
        names = set(tar.getnames())
    assert {"hostapp/share", "hostapp/share/data"} <= dirs
    assert "hostapp/share/data/host.txt" not in names
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["tar", "xzf", str(tmp_path / "hostapp.tar.gz")], cwd=elsewhere, check=True)
    there = occlum(
        elsewhere / "hostapp", "run", "/bin/ls", "-A", "/data", env=other_machine(tmp_path)
    )
    assert there.returncode == 0 and there.stdout == "", there.stderr


# --- refusals ---------------------------------------------------------------------------------


def test_a_debuggable_enclave_is_packaged_only_with_debug(
    debuggable: Instance, tmp_path: Path
) -> None:
    line = one_error_line(occlum(tmp_path, "--instance-dir", str(debuggable.path), "package"))
    assert "debuggable" in line and "occlum package --debug" in line
    assert os.listdir(tmp_path) == []
    res = occlum(tmp_path, "--instance-dir", str(debuggable.path), "package", "--debug")
    assert res.returncode == 0, res.stderr
    assert "debuggable" in res.stderr  # a warning
    assert os.listdir(tmp_path) == ["dbgapp.tar.gz"]


def test_an_unbuilt_instance_is_refused(tmp_path: Path) -> None:
    inst = Instance.new(tmp_path / "fresh")
    line = one_error_line(occlum(tmp_path, "--instance-dir", str(inst.path), "package"))
    assert "not built" in line and "occlum build" in line
    assert not (tmp_path / "fresh.tar.gz").exists()
    line = one_error_line(occlum(tmp_path / "fresh" / "image", "package", "--debug"))
    assert "not an Occlum instance" in line


def test_an_instance_changed_since_its_build_is_refused(
    debuggable: Instance, tmp_path: Path
) -> None:
    original = debuggable.config_path.read_text()
    cfg = debuggable.config()
    cfg["env"] = {"default": ["CHANGED=yes"], "untrusted": []}
    debuggable.write_config(cfg)
    try:
        res = occlum(tmp_path, "--instance-dir", str(debuggable.path), "package", "--debug")
        line = one_error_line(res)
        assert "Occlum.json changed since `occlum build`" in line
        assert os.listdir(tmp_path) == []
    finally:
        debuggable.config_path.write_text(original)
    res = occlum(tmp_path, "--instance-dir", str(debuggable.path), "package", "--debug")
    assert res.returncode == 0, res.stderr


def test_a_bad_destination_is_one_line_and_leaves_nothing_behind(
    release: Instance, tmp_path: Path
) -> None:
    line = one_error_line(occlum(release.path, "package", str(tmp_path / "no" / "x.tar.gz")))
    assert f"{tmp_path / 'no'} does not exist" in line
    (tmp_path / "file").write_text("")
    line = one_error_line(occlum(release.path, "package", str(tmp_path / "file" / "x.tar.gz")))
    assert "is not a directory" in line
    # a write that fails half way (the file size limit, as a full disk would)
    full = tmp_path / "full"
    full.mkdir()
    res = subprocess.run(
        ["bash", "-c", 'ulimit -f 64; trap "" XFSZ; exec "$@"', "bash", OCCLUM,
         "--instance-dir", str(release.path), "package", str(full / "x.tar.gz")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert "cannot write" in one_error_line(res) and "File too large" in res.stderr
    assert os.listdir(full) == []
    # an OCI destination that is not empty
    line = one_error_line(occlum(release.path, "package", "--oci", str(tmp_path)))
    assert "not an empty directory" in line
    line = one_error_line(occlum(release.path, "package", "--oci", str(tmp_path / "no" / "oci")))
    assert "does not exist" in line
    assert sorted(os.listdir(tmp_path)) == ["file", "full"]


# --- the OCI image layout ---------------------------------------------------------------------


def read_layout(layout: Path, tag: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Check the layout's digests and sizes; return its manifest, config and layer blob."""
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}

    def blob(desc: dict[str, Any]) -> bytes:
        algo, _, hexdigest = desc["digest"].partition(":")
        data = (layout / "blobs" / algo / hexdigest).read_bytes()
        assert sha256(data) == desc["digest"] and len(data) == desc["size"]
        return data

    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    [desc] = [
        m for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    ]  # fmt: skip
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    manifest = json.loads(blob(desc))
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(blob(manifest["config"]))
    layers = [blob(d) for d in manifest["layers"]]
    assert len(config["rootfs"]["diff_ids"]) == len(layers)
    for data, diff_id in zip(layers, config["rootfs"]["diff_ids"], strict=True):
        assert sha256(gzip.decompress(data)) == diff_id
    assert manifest["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    return manifest, config, layers[-1]


def test_an_oci_layout_with_the_instance_and_its_entrypoint(
    release: Instance, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    cmd = "/bin/sh -c 'cat /etc/greeting; exit 3'"
    args = ("package", "--no-runtime", "--oci")
    res = occlum(release.path, *args, str(layout), "--tag", "v1", "--cmd", cmd)
    assert res.returncode == 0, res.stderr
    manifest, config, layer = read_layout(layout, "v1")
    assert len(manifest["layers"]) == 1
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["Entrypoint"] == ENTRYPOINT
    assert config["config"]["Cmd"] == ["/bin/sh", "-c", "cat /etc/greeting; exit 3"]
    assert config["config"]["WorkingDir"] == "/occlum_instance"
    mrenclave = occlum(release.path, "print", "mrenclave").stdout.strip()
    assert config["config"]["Labels"]["occlum.mrenclave"] == mrenclave
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        names = tar.getnames()
    assert {n.removeprefix("occlum_instance") for n in names} == ARCHIVE_ENTRIES
    # the same build gives the same image
    again = tmp_path / "again"
    res = occlum(release.path, *args, str(again), "--tag", "v1", "--cmd", cmd)
    assert res.returncode == 0, res.stderr
    assert (again / "index.json").read_bytes() == (layout / "index.json").read_bytes()
    # a program outside the entry points is refused before anything is written
    bad = occlum(release.path, "package", "--oci", str(tmp_path / "bad"), "--cmd", "/etc/greeting")
    assert "not under any entry point" in one_error_line(bad)
    assert not (tmp_path / "bad").exists()


def umoci() -> str:
    found = shutil.which("umoci")
    if found is None:
        pytest.skip("umoci is not installed (scripts/setup.sh installs it): no OCI tool to check")
    return found


def test_umoci_unpacks_the_oci_image_and_its_instance_runs(
    release: Instance, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    res = occlum(
        release.path, "package", "--no-runtime", "--oci", str(layout),
        "--cmd", f"/bin/sh -c '{SCRIPT}'",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    tool = umoci()
    stat = subprocess.run(
        [tool, "stat", "--json", "--image", f"{layout}:latest"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert stat.returncode == 0, stat.stderr
    history = json.loads(stat.stdout)["history"]
    assert [h["created_by"] for h in history] == ["occlum package --oci"]
    bundle = tmp_path / "bundle"
    unpack = [tool, "unpack", *(["--rootless"] if os.geteuid() else []), "--image"]
    done = subprocess.run(
        [*unpack, f"{layout}:latest", str(bundle)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    process = json.loads((bundle / "config.json").read_text())["process"]
    assert process["args"] == [*ENTRYPOINT, "/bin/sh", "-c", SCRIPT]
    assert process["cwd"] == "/occlum_instance"
    # run what the container would run, with the bundle's root standing for the container's
    instance = bundle / "rootfs" / "occlum_instance"
    argv = [str(instance) if a == "/occlum_instance" else a for a in process["args"][1:]]
    there = occlum(instance, *argv, env=other_machine(tmp_path))
    assert (there.returncode, there.stdout) == (7, GREETING.decode() + "args: \n"), there.stderr


def test_an_oci_image_on_a_base_image(release: Instance, tmp_path: Path) -> None:
    tool = umoci()
    base = tmp_path / "base"

    def run(*args: str) -> None:
        done = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr

    (tmp_path / "marker").write_text("from the base\n")
    run("init", "--layout", str(base))
    run("new", "--image", f"{base}:py")
    run("insert", "--image", f"{base}:py", str(tmp_path / "marker"), "/opt/marker")
    run("config", "--image", f"{base}:py", "--config.env", "PATH=/opt/venv/bin:/usr/bin")
    layout = tmp_path / "oci"
    res = occlum(release.path, "package", "--oci", str(layout), "--base", f"{base}:py")
    assert res.returncode == 0, res.stderr
    assert "Cmd: none" in res.stdout  # the entry point /bin is a directory
    manifest, config, _ = read_layout(layout, "latest")
    assert len(manifest["layers"]) == 2
    assert config["config"]["Env"] == ["PATH=/opt/venv/bin:/usr/bin"]
    assert config["config"]["Entrypoint"] == ENTRYPOINT and "Cmd" not in config["config"]
    run("unpack", *(["--rootless"] if os.geteuid() else []), "--image", f"{layout}:latest",
        str(tmp_path / "bundle"))  # fmt: skip
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "opt" / "marker").read_text() == "from the base\n"
    assert (rootfs / "occlum_instance" / "build" / "image.img").is_file()
    line = one_error_line(
        occlum(release.path, "package", "--oci", str(tmp_path / "x"), "--base", f"{base}:nope")
    )
    assert "no image tagged 'nope'" in line


# --- the self-contained image: the runtime layer ----------------------------------------------


@pytest.mark.slow
def test_a_self_contained_image_carries_python_and_the_libos_reproducibly(
    release: Instance, tmp_path: Path
) -> None:
    from occlum.enclave.measure import compute_libos_digest, libos_digest

    layouts = []
    for i in range(2):  # each with a cache of its own: the runtime layer is made twice
        layout = tmp_path / f"oci{i}"
        res = occlum(
            release.path, "package", "--oci", str(layout), "--cmd", "/bin/cat /etc/greeting",
            env={"XDG_CACHE_HOME": str(tmp_path / f"cache{i}")},
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        layouts.append(layout)
    # same inputs, same image
    assert (layouts[0] / "index.json").read_bytes() == (layouts[1] / "index.json").read_bytes()
    manifest, config, _ = read_layout(layouts[0], "latest")
    assert len(manifest["layers"]) == 2
    assert config["config"]["Entrypoint"] == ["/usr/bin/occlum-container"]
    assert config["config"]["Cmd"] == ["/bin/cat", "/etc/greeting"]
    env = config["config"]["Env"]
    assert "OCCLUM_PLATFORM_KEY=/var/lib/occlum/platform/platform.key" in env
    runtime_desc = manifest["layers"][0]
    assert runtime_desc["size"] < 64 << 20  # small: no test suites, no debugging sections
    blob = layouts[0] / "blobs" / "sha256" / runtime_desc["digest"].split(":")[1]
    root = tmp_path / "rootfs"
    with tarfile.open(blob) as tar:
        members = tar.getmembers()
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
        assert len({m.mtime for m in members}) == 1
        assert [m.name for m in members] == sorted(m.name for m in members)
        tar.extractall(root, filter="tar")
    site = root / "usr/lib/occlum/python/lib/python3.11/site-packages"
    for name in (
        "usr/lib/occlum/python/bin/python3", "usr/lib/occlum/python/lib/python3.11/os.py",
        "usr/lib64/ld-linux-x86-64.so.2", "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/bin/occlum", "usr/bin/occlum-container",
    ):  # fmt: skip
        assert (root / name).is_file(), name
    assert os.readlink(root / "lib64") == "usr/lib64"
    assert (site / "cryptography").is_dir() and (site / "pydantic_core").is_dir()
    assert (site / "occlum" / "__pycache__" / "__init__.cpython-311.pyc").is_file()
    assert not (root / "usr/lib/occlum/python/lib/python3.11/test").exists()
    # the LibOS in the image is the one that built the instance: the same MRENCLAVE there
    assert compute_libos_digest(site / "occlum") == libos_digest()
    # no key travels in the image
    assert not [p for p in root.rglob("*") if p.name == "platform.key"]
    assert os.listdir(root / "var/lib/occlum/platform") == []


def test_deploy_options_out_of_place_or_out_of_range_are_one_line(
    release: Instance, tmp_path: Path
) -> None:
    for args in (
        ["--port", "80"], ["--replicas", "2"], ["--image", "x"], ["--no-runtime"],
        ["--seccomp-profile", str(tmp_path / "p.json")],
        ["--k8s", str(tmp_path / "a.yaml"), str(tmp_path / "x.tar.gz")],
    ):  # fmt: skip
        res = occlum(release.path, "package", *args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, (args, res.stderr)
    k8s = ("package", "--k8s", str(tmp_path / "a.yaml"))
    assert "not a TCP port" in one_error_line(occlum(release.path, *k8s, "--port", "70000"))
    assert "from 1 to 100" in one_error_line(occlum(release.path, *k8s, "--replicas", "0"))
    line = one_error_line(occlum(release.path, *k8s, "--platform-dir", "relative/dir"))
    assert "absolute path" in line
    assert not (tmp_path / "a.yaml").exists()
    # a manifest alone (no image written), with the program as the container's args
    res = occlum(release.path, *k8s, "--cmd", "/bin/cat /etc/greeting", "--tag", "2")
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load((tmp_path / "a.yaml").read_text())
    [container] = doc["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/myapp:2"
    assert container["args"] == ["/bin/cat", "/etc/greeting"]
