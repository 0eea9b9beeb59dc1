"""What a run's start imports: the LibOS without the attestation side (X.509, certificate
chains), which only a /dev/sgx quote request needs (about 20 ms of every start otherwise)."""

from __future__ import annotations

import subprocess
import sys


def test_booting_imports_no_x509() -> None:
    code = "import sys, occlum.boot; print(sorted(m for m in sys.modules if 'x509' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out
