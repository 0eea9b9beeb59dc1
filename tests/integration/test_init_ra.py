"""Attested boot (Occlum's init_ra): ``occlum build --image-key KEY --init-ra URL#SECRET``.

The instance's root image is encrypted; its initfs holds the attested-boot init, which gets the
image key from ``occlum kbs serve`` against a quote of the enclave. The instance starts only
when the broker holds the key under a policy its quote satisfies, and the key is nowhere in the
instance directory.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import libos
from libos import Instance, Result

SECRET_NAME = "app-image-key"
GREETING = "attested root mounted\n"

pytestmark = pytest.mark.needs_root


occlum = functools.partial(libos.occlum_cli, timeout=600)


def add_secret(env: dict[str, str], store: Path, key_file: Path, mrenclave: str) -> None:
    """The image key under SECRET_NAME, released to ``mrenclave`` (debuggable allowed)."""
    res = occlum(["kbs", "add-secret", "--store", str(store), SECRET_NAME, "--from-file",
                  str(key_file), "--mrenclave", mrenclave, "--allow-debug"], env)  # fmt: skip
    assert res.code == 0, res.describe()


@dataclass
class Boot:
    inst: Instance
    env: dict[str, str]
    store: Path
    key_file: Path
    broker: libos.KbsServer
    mrenclave: str
    url: str = ""

    def build(self, init_ra: str) -> str:
        """Build with ``--init-ra init_ra``; the new MRENCLAVE."""
        built = occlum(["build", "--image-key", str(self.key_file), "--init-ra", init_ra],
                       self.env, self.inst.path)  # fmt: skip
        assert built.code == 0, built.describe()
        printed = occlum(["print", "mrenclave"], self.env, self.inst.path)
        return str(printed.stdout).strip()

    def add_secret(self, mrenclave: str) -> None:
        add_secret(self.env, self.store, self.key_file, mrenclave)

    def run(self) -> Result:
        return self.inst.run(["/bin/cat", "/etc/greeting"], extra_env=self.env, timeout=300)


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Boot]:
    work = tmp_path_factory.mktemp("initra")
    env = dict(os.environ, OCCLUM_PLATFORM_KEY=str(work / "platform" / "platform.key"))
    store = work / "store"
    root = work / "root.pem"
    printed = occlum(["print", "platform-root"], env)
    assert printed.code == 0, printed.describe()
    root.write_text(printed.stdout)
    key_file = work / "image_key"  # outside the instance, as the user keeps it
    assert occlum(["gen-image-key", str(key_file)], env).code == 0
    # the store exists before the broker serves it; the policy is set by each test
    add_secret(env, store, key_file, "ab" * 32)
    broker = libos.KbsServer(store, root, env, work / "broker.log")
    try:
        url = broker.url
        inst = Instance.new(work / "instance")
        inst.configure()
        (inst.image / "etc" / "greeting").write_text(GREETING)
        libos.place_with_dependencies(inst.image, {"/bin/cat": Path("/bin/cat")})
        boot = Boot(inst, env, store, key_file, broker, "", url)
        boot.mrenclave = boot.build(f"{url}#{SECRET_NAME}")
        assert len(boot.mrenclave) == 64
        yield boot
    finally:
        broker.stop()


def one_line_failure(res: Result, expected: str) -> None:
    assert res.code != 0, res.describe()
    assert GREETING not in res.stdout
    assert "Traceback" not in res.stderr, res.describe()
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], res.describe()


def test_the_key_is_nowhere_in_the_instance(boot: Boot) -> None:
    text = boot.key_file.read_bytes().strip()
    raw = bytes.fromhex(text.decode().replace("-", ""))
    for path in boot.inst.path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert text not in data and raw not in data, path


def test_boots_when_the_broker_holds_the_key_for_this_enclave(boot: Boot) -> None:
    boot.add_secret(boot.mrenclave)
    res = boot.run()
    assert res.code == 0, res.describe()
    assert res.stdout == GREETING


def test_refused_when_the_policy_names_another_enclave(boot: Boot) -> None:
    boot.add_secret("ab" * 32)
    one_line_failure(boot.run(), f"refused the image key {SECRET_NAME} (403)")


def test_bad_init_ra_options_are_one_line(boot: Boot) -> None:
    cases = {
        ("--init-ra", "http://127.0.0.1:1"): "--init-ra needs --image-key FILE",
        ("--image-key", str(boot.key_file), "--init-ra", "ftp://x"): "http://IPV4:PORT[#SECRET]",
        ("--image-key", str(boot.key_file), "--init-ra", "http://127.0.0.1:1",
         "--buildin-image-key"): "exclude each other",
    }  # fmt: skip
    for args, expected in cases.items():
        res = occlum(["build", *args], boot.env, boot.inst.path)
        assert res.code != 0 and "Traceback" not in res.stderr, res.describe()
        assert len(res.stderr.splitlines()) == 1 and expected in res.stderr, res.describe()


def test_the_url_and_the_secret_name_are_measured(boot: Boot) -> None:
    try:
        assert boot.build(f"{boot.url}#other-name") != boot.mrenclave
        assert boot.build(f"{boot.url.rsplit(':', 1)[0]}:1#{SECRET_NAME}") != boot.mrenclave
    finally:
        assert boot.build(f"{boot.url}#{SECRET_NAME}") == boot.mrenclave


def test_fails_when_the_broker_is_unreachable(boot: Boot) -> None:
    boot.add_secret(boot.mrenclave)
    boot.broker.stop()
    one_line_failure(boot.run(), "cannot reach the key broker at http://127.0.0.1:")
