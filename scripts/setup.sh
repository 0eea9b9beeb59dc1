#!/usr/bin/env bash
# Idempotent machine setup for Occlum for Python: system packages the LibOS and its test
# suites need (installed with apt-get only when something is missing), then the project's
# virtual environment in .venv with the package installed in editable mode.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# name of the Debian package -> a file it installs (cheap presence check, no dpkg query per run)
declare -A PKG_FILES=(
    [busybox-static]=/bin/busybox
    [sqlite3]=/usr/bin/sqlite3
    [python3]=/usr/bin/python3
    [gcc]=/usr/bin/gcc
    [libc6-dev]=/usr/include/stdio.h
    [make]=/usr/bin/make
    [musl-tools]=/usr/bin/musl-gcc
    [tar]=/bin/tar
    [gzip]=/bin/gzip
    [findutils]=/usr/bin/find
    [grep]=/bin/grep
    [coreutils]=/bin/ls
    [dash]=/bin/dash
    [bash]=/bin/bash
    [procps]=/bin/ps
    [util-linux]=/usr/bin/taskset
    [file]=/usr/bin/file
    [openssl]=/usr/bin/openssl
    [diffutils]=/usr/bin/cmp
    [proot]=/usr/bin/proot
    [hyperfine]=/usr/bin/hyperfine
    [redis-server]=/usr/bin/redis-server
    [lighttpd]=/usr/sbin/lighttpd
    [wrk]=/usr/bin/wrk
    # bench/run.py's Go and Java web servers (built by the benchmark; optional)
    [golang-go]=/usr/bin/go
    [openjdk-17-jdk-headless]=/usr/lib/jvm/java-17-openjdk-amd64/bin/javac
    [apache2-utils]=/usr/bin/ab
    [umoci]=/usr/bin/umoci
    # the server (postgresql-NN, whose binaries are in /usr/lib/postgresql/NN/bin) and psql
    [postgresql]=/usr/bin/pg_ctlcluster
    [postgresql-client]=/usr/bin/psql
    # the applications of bench/apps.py (java -version, node -e 0, python3 -c "import numpy")
    [openjdk-17-jre-headless]=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
    [nodejs]=/usr/bin/node
    [python3-numpy]=/usr/lib/python3/dist-packages/numpy/__init__.py
    # occlum mount: FUSE (fusermount3), and what the pyfuse3 binding builds against
    [fuse3]=/usr/bin/fusermount3
    [libfuse3-dev]=/usr/include/fuse3/fuse.h
    [pkg-config]=/usr/bin/pkg-config
    [python3-dev]=/usr/bin/python3-config
    # libcrypto (headers and the static library) for the attested-boot init and tests/c/attest
    [libssl-dev]=/usr/include/openssl/evp.h
    # a container engine for packaged images (docs/deploy.md, tests/integration/test_container.py):
    # podman, with runc as its runtime (crun refuses hosts whose cgroups are in hybrid mode)
    [podman]=/usr/bin/podman
    [runc]=/usr/sbin/runc
    # the pause process of the pods of `podman kube play` (built locally: no registry)
    [catatonit]=/usr/bin/catatonit
)
# packages whose absence does not fail the setup (benchmark peers and helpers)
OPTIONAL=" proot hyperfine openjdk-17-jre-headless nodejs python3-numpy golang-go openjdk-17-jdk-headless podman runc catatonit "

missing=()
for pkg in "${!PKG_FILES[@]}"; do
    [[ -e "${PKG_FILES[$pkg]}" ]] || missing+=("$pkg")
done
# Debian splits venv support out of python3
if [[ -x /usr/bin/python3 ]] && ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
fi

required=()
optional=()
for pkg in "${missing[@]}"; do
    if [[ "$OPTIONAL" == *" $pkg "* ]]; then optional+=("$pkg"); else required+=("$pkg"); fi
done
# An optional package that cannot be installed (not root, no network, not in the distribution)
# is reported and skipped; only a missing required one fails the setup.
skip_optional() {
    echo "setup: optional packages ${optional[*]} not installed ($1; benchmarks skip them)" >&2
    optional=()
}
if ((${#missing[@]})); then
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            SUDO=(sudo)
        elif ((${#required[@]})); then
            echo "setup: missing system packages (${missing[*]}) and not root: install them by hand" >&2
            exit 1
        else
            skip_optional "not root"
        fi
    fi
fi
# Others may run apt-get at the same time (another worktree's setup): a held dpkg or apt lock
# makes apt-get fail at once, so wait for it and try again.
apt_retry() {
    local try
    for try in 1 2 3 4 5 6; do
        "$@" && return 0
        ((try < 6)) && { echo "setup: apt-get failed (a lock held by another?), retrying" >&2; sleep 10; }
    done
    return 1
}
if ((${#required[@]} + ${#optional[@]})); then
    echo "setup: installing ${required[*]} ${optional[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt_retry "${SUDO[@]}" apt-get update -qq; then
        if ((${#required[@]})); then
            echo "setup: apt-get update failed: cannot install ${required[*]}" >&2
            exit 1
        fi
        skip_optional "apt-get update failed"
    fi
    if ((${#required[@]})); then
        apt_retry "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${required[@]}" </dev/null
    fi
    for pkg in "${optional[@]}"; do
        # podman alone would bring crun (its first choice of runtime); with runc in the same
        # call, runc satisfies it
        [[ $pkg == podman ]] && pkg="podman runc"
        [[ $pkg == runc && " ${optional[*]} " == *" podman "* ]] && continue
        # shellcheck disable=SC2086  # "podman runc" is two packages
        apt_retry "${SUDO[@]}" apt-get install -y -qq --no-install-recommends $pkg </dev/null \
            || echo "setup: optional package $pkg not installed (benchmarks skip it)" >&2
    done
fi

# The project's virtual environment. Any python3 >= 3.11 with venv works.
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.occlum-setup-stamp
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]] || ! .venv/bin/python -c "import occlum, pytest, ruff, mypy, pyfuse3" 2>/dev/null; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,mount]'
    touch "$stamp"
fi
# Byte-compile the LibOS: every `occlum` command imports it afresh, and with
# PYTHONDONTWRITEBYTECODE set (as on some machines) Python would otherwise compile its
# sources at every start (~0.4 s). Up-to-date files are skipped.
.venv/bin/python -m compileall -q -j 0 src/occlum >/dev/null
