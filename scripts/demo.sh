#!/usr/bin/env bash
# Build a demo instance from real host programs (bash, coreutils, busybox) with copy_bom and run
# a small shell pipeline inside the LibOS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export PATH="$ROOT/.venv/bin:$PATH"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/occlum-demo.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

occlum new demo
cat > demo/bom.yaml <<'BOM'
targets:
  - target: /bin
    copy:
      - files:
          - /usr/bin/bash
          - /usr/bin/busybox
          - /usr/bin/ls
          - /usr/bin/uname
          - /usr/bin/head
          - /usr/bin/seq
          - /usr/bin/sort
          - /usr/bin/cat
BOM
copy_bom -f demo/bom.yaml --root demo/image
cd demo
occlum build
echo "--- running inside the LibOS ---"
occlum run /bin/bash -c 'echo hello from $(uname -n); ls /bin | head; seq 1 1000 | sort -rn | head -1'
echo "--- the root is writable and encrypted at rest: a second run sees the first one's file ---"
occlum run /bin/bash -c 'echo "written inside the enclave" > /root/note'
occlum run /bin/cat /root/note
grep -rq "written inside the enclave" run/ && echo "plaintext found on the host!" || echo "(not a byte of it on the host, under run/)"
echo "MRENCLAVE $(occlum print mrenclave)"
