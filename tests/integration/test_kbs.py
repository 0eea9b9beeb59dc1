"""The key broker end to end: ``occlum kbs serve`` on the host, and ``tests/c/attest/
kbs_fetch.c`` inside an instance fetching a secret through /dev/sgx quotes.

The instance is debuggable (as every test instance), product 7, version 3. Each refusal is
its own secret policy (or broker, or request) and must come back as one line naming the failed
check, with nothing of the secret in the program's output or the broker's log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import libos
import occlum as occlum_package
from libos import Instance, KbsServer, Result

ATTEST = Path(__file__).resolve().parent.parent / "c" / "attest"
PRODUCT_ID, VERSION = 7, 3
SECRET = "s3cret-image-key-0123456789abcdef"

pytestmark = pytest.mark.needs_root


occlum = libos.occlum_cli


@dataclass
class Kbs:
    inst: Instance
    env: dict[str, str]
    store: Path
    broker: KbsServer
    stranger: KbsServer  # trusts another platform's root only


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    work = tmp_path_factory.mktemp("kbs")
    env = dict(os.environ, OCCLUM_PLATFORM_KEY=str(work / "platform" / "platform.key"))
    other = dict(os.environ, OCCLUM_PLATFORM_KEY=str(work / "other" / "platform.key"))
    saved = os.environ.get("OCCLUM_PLATFORM_KEY")
    os.environ["OCCLUM_PLATFORM_KEY"] = env["OCCLUM_PLATFORM_KEY"]  # for Instance.build
    servers: list[KbsServer] = []
    try:
        binary = work / "kbs_fetch"
        cmd = ["gcc", *libos.GLIBC.flags, "-Wall", "-o", str(binary), str(ATTEST / "kbs_fetch.c"),
               "-lcrypto"]  # fmt: skip
        subprocess.run(cmd, check=True)
        inst = Instance.new(work / "instance")
        inst.configure()
        cfg = inst.config()
        metadata = cfg.setdefault("metadata", {})
        assert isinstance(metadata, dict)
        metadata.update(product_id=PRODUCT_ID, version_number=VERSION)
        inst.write_config(cfg)
        libos.place_with_dependencies(inst.image, {"/bin/kbs_fetch": binary})
        inst.build()
        mrenclave = occlum(["print", "mrenclave"], env, inst.path).stdout.strip()
        mrsigner = occlum(["print", "mrsigner"], env, inst.path).stdout.strip()
        assert len(mrenclave) == len(mrsigner) == 64
        store = work / "store"
        (work / "secret.txt").write_text(SECRET)
        exact = ["--mrenclave", mrenclave, "--mrsigner", mrsigner,
                 "--isv-prod-id", str(PRODUCT_ID), "--min-isv-svn", str(VERSION)]  # fmt: skip
        policies = {
            "ok": [*exact, "--allow-debug"],
            "wrong-mrenclave": ["--mrenclave", "ab" * 32, "--allow-debug"],
            "wrong-mrsigner": [
                "--mrenclave",
                mrenclave,
                "--mrsigner",
                "ab" * 32,
                "--allow-debug",
            ],
            "svn": ["--mrsigner", mrsigner, "--min-isv-svn", str(VERSION + 1), "--allow-debug"],
            "no-debug": exact,
        }
        for name, options in policies.items():
            res = occlum(["kbs", "add-secret", "--store", str(store), name, "--from-file",
                          str(work / "secret.txt"), *options], env)  # fmt: skip
            assert res.code == 0, res.describe()
        roots = {}
        for label, e in (("root", env), ("other-root", other)):
            printed = occlum(["print", "platform-root"], e)
            assert printed.code == 0, printed.describe()
            roots[label] = work / f"{label}.pem"
            roots[label].write_text(printed.stdout)
        servers.append(KbsServer(store, roots["root"], env, work / "broker.log"))
        servers.append(KbsServer(store, roots["other-root"], env, work / "stranger.log"))
        yield Kbs(inst, env, store, servers[0], servers[1])
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.stop()
        if saved is None:
            os.environ.pop("OCCLUM_PLATFORM_KEY", None)
        else:
            os.environ["OCCLUM_PLATFORM_KEY"] = saved


def fetch(kbs: Kbs, name: str, *mode: str, server: KbsServer | None = None) -> Result:
    port = (server or kbs.broker).port
    return kbs.inst.run(["/bin/kbs_fetch", "127.0.0.1", str(port), name, *mode],
                        extra_env=kbs.env)  # fmt: skip


def test_a_program_inside_gets_the_secret(kbs: Kbs) -> None:
    res = fetch(kbs, "ok")
    assert res.code == 0, res.describe()
    assert res.stdout == f"secret: {SECRET}\n"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("tampered", "403 quote refused: quote signature does not verify with the attestation key"),
        ("other-root", "403 quote refused: PCK certificate chain refused"),
        ("replayed", "403 nonce refused: unknown or already used (a replay)"),
        ("wrong-mrenclave", "403 policy of 'wrong-mrenclave' refused: MRENCLAVE"),
        ("wrong-mrsigner", "403 policy of 'wrong-mrsigner' refused: MRSIGNER"),
        (
            "svn",
            f"403 policy of 'svn' refused: ISVSVN {VERSION} is below the minimum {VERSION + 1}",
        ),
        ("no-debug", "403 policy of 'no-debug' refused: the enclave is debuggable"),
    ],
)
def test_each_refusal_names_its_check_and_releases_nothing(
    kbs: Kbs, case: str, expected: str
) -> None:
    if case == "tampered":
        res = fetch(kbs, "ok", "tamper")
    elif case == "other-root":
        res = fetch(kbs, "ok", server=kbs.stranger)
    elif case == "replayed":
        res = fetch(kbs, "ok", "replay")
    else:
        res = fetch(kbs, case)
    assert res.code == 1, res.describe()
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("refused: ") and expected in lines[0], res.stdout
    assert SECRET not in res.stdout + res.stderr


def test_the_store_holds_no_plaintext_and_the_log_no_secret(kbs: Kbs) -> None:
    for path in kbs.store.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert (kbs.store / "broker.key").stat().st_mode & 0o777 == 0o600
    listed = occlum(["kbs", "list", "--store", str(kbs.store)], kbs.env)
    assert listed.code == 0 and SECRET not in listed.stdout, listed.describe()
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(
        ["ok", "wrong-mrenclave", "wrong-mrsigner", "svn", "no-debug"]
    )
    log = kbs.broker.log_path.read_text()
    assert SECRET not in log


def test_bad_input_is_one_line(kbs: Kbs, tmp_path: Path) -> None:
    store = str(kbs.store)
    secret = tmp_path / "s"
    secret.write_text("x")
    for args in (
        ["list", "--store", str(tmp_path / "none")],
        ["add-secret", "--store", store, "../x", "--from-file", str(secret), "--mrenclave",
         "ab" * 32],
        ["add-secret", "--store", store, "x", "--from-file", str(secret)],
        ["add-secret", "--store", store, "x", "--from-file", str(secret), "--mrenclave", "zz"],
        ["add-secret", "--store", store, "x", "--from-file", str(tmp_path / "missing"),
         "--mrenclave", "ab" * 32],
        ["serve", "--store", store, "--listen", "nonsense", "--root-cert", str(secret)],
        ["serve", "--store", store, "--listen", "127.0.0.1:0", "--root-cert", str(secret)],
    ):  # fmt: skip
        res = occlum(["kbs", *args], kbs.env)
        assert res.code != 0 and "Traceback" not in res.stderr, res.describe()
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


PY_FETCH = """
import sys
sys.path.insert(0, "/opt/occlum-py")
from occlum.kbs.client import KbsError, dev_sgx_quote, fetch_secret
try:
    print("secret:", fetch_secret(sys.argv[1], sys.argv[2], dev_sgx_quote).decode())
except KbsError as e:
    print("refused:", e)
    sys.exit(1)
"""
# the package's modules the client needs inside, and what they import
CLIENT_MODULES = ["__init__.py", "errors.py", "crypto/__init__.py", "crypto/envelope.py",
                  "kbs/__init__.py", "kbs/client.py"]  # fmt: skip


def _shared_object_dependencies(objects: list[Path]) -> set[str]:
    """What the shared objects load (place_with_dependencies follows executables only)."""
    libs: set[str] = set()
    for obj in objects:
        out = subprocess.run(["ldd", str(obj)], capture_output=True, text=True, check=False)
        libs.update(m.group(1) for m in re.finditer(r"=> (/\S+)", out.stdout))
    return libs


@pytest.mark.slow
def test_the_python_client_inside_gets_the_secret_through_dev_sgx(kbs: Kbs, tmp_path: Path) -> None:
    import cryptography

    inst = Instance.new(tmp_path / "instance")
    inst.configure(entry_points=["/usr/bin"])
    stdlib = Path("/usr/lib/python3.11")
    shutil.copytree(stdlib, inst.image / stdlib.relative_to("/"), symlinks=False,
                    ignore=shutil.ignore_patterns("test", "idlelib", "tkinter", "ensurepip"))  # fmt: skip
    site = Path(cryptography.__file__).parent.parent
    for package in ("cryptography", "cffi", "pycparser"):
        if (site / package).is_dir():
            shutil.copytree(site / package, inst.image / "opt/occlum-py" / package)
    package = Path(occlum_package.__file__).parent
    for module in CLIENT_MODULES:
        libos.place(inst.image, package / module, f"/opt/occlum-py/occlum/{module}")
    natives = {"/usr/bin/python3": Path("/usr/bin/python3")}
    for so in [*site.glob("_cffi_backend*.so"), *(site / "cryptography").rglob("*.so")]:
        natives[f"/opt/occlum-py/{so.relative_to(site)}"] = so
    for so in stdlib.glob("lib-dynload/*.so"):
        natives[str(so)] = so
    libos.place_with_dependencies(inst.image, natives)
    for lib in _shared_object_dependencies([p for p in natives.values() if p.suffix == ".so"]):
        libos.place(inst.image, Path(lib), lib)
    (inst.image / "opt/kbs_fetch.py").write_text(PY_FETCH)
    inst.build()
    mrenclave = occlum(["print", "mrenclave"], kbs.env, inst.path).stdout.strip()
    (tmp_path / "secret.txt").write_text(SECRET)
    for name, options in (("py", ["--allow-debug"]), ("py-no-debug", [])):
        added = occlum(["kbs", "add-secret", "--store", str(kbs.store), name, "--from-file",
                        str(tmp_path / "secret.txt"), "--mrenclave", mrenclave, *options],
                       kbs.env)  # fmt: skip
        assert added.code == 0, added.describe()
    url = f"http://127.0.0.1:{kbs.broker.port}"
    res = inst.run(["/usr/bin/python3", "/opt/kbs_fetch.py", url, "py"], extra_env=kbs.env)
    assert (res.code, res.stdout) == (0, f"secret: {SECRET}\n"), res.describe()
    res = inst.run(["/usr/bin/python3", "/opt/kbs_fetch.py", url, "py-no-debug"],
                   extra_env=kbs.env)  # fmt: skip
    assert res.code == 1, res.describe()
    assert res.stdout.startswith("refused: key broker refused (403): policy of 'py-no-debug' "
                                 "refused: the enclave is debuggable"), res.stdout  # fmt: skip
    assert SECRET not in res.stdout + res.stderr
