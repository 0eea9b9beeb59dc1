"""A glibc program placed by copy_bom's dependency analysis alone runs what glibc loads at run
time: pthread_cancel and pthread_exit need libgcc_s.so.1 (the unwinder), which no DT_NEEDED
names. Natively and inside the LibOS the output must be the same."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static int cleaned;

static void cleanup(void *arg) { (void)arg; cleaned++; }

static void *sleeper(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleanup, NULL);
    for (;;)
        pause();
    pthread_cleanup_pop(0);
    return NULL;
}

static void *exiter(void *arg)
{
    pthread_cleanup_push(cleanup, NULL);
    pthread_exit(arg);
    pthread_cleanup_pop(0);
    return NULL;
}

int main(void)
{
    pthread_t t;
    void *res;
    pthread_create(&t, NULL, sleeper, NULL);
    printf("cancel: %d\n", pthread_cancel(t));
    pthread_join(t, &res);
    printf("joined: cancelled %d, cleanup ran %d\n", res == PTHREAD_CANCELED, cleaned);
    pthread_create(&t, NULL, exiter, (void *)42);
    pthread_join(t, &res);
    printf("pthread_exit: %ld, cleanup ran %d\n", (long)res, cleaned);
    return 0;
}
"""


def test_pthread_cancel_and_exit_with_copy_bom_dependencies(tmp_path: Path) -> None:
    if not any(os.path.exists(f"{d}/libgcc_s.so.1") for d in ("/lib/x86_64-linux-gnu", "/lib64")):
        pytest.skip("the host has no libgcc_s.so.1")
    src = tmp_path / "cancel.c"
    src.write_text(PROGRAM)
    prog = libos.compile_c(src, tmp_path / "cancel")
    native = libos.run_native([str(prog)])
    assert native.code == 0 and "cleanup ran 2" in native.stdout, native.describe()
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    inst.copy_bom({"targets": [{"target": "/bin", "copy": [{"files": [str(prog)]}]}]})
    assert list(inst.image.rglob("libgcc_s.so.1")), "copy_bom placed glibc's unwinder"
    inst.build()
    inside = inst.run(["/bin/cancel"])
    assert (inside.code, inside.stdout) == (native.code, native.stdout), inside.describe()
