"""The container's seccomp profile (occlum.instance.deploy): it must never refuse a program a
call the LibOS serves, nor the LibOS a call it makes, and must let the loader stub's private
call reach the LibOS."""

from __future__ import annotations

import json

from occlum.instance.deploy import SUPERVISOR_CALLS, seccomp_profile, seccomp_profile_text
from occlum.syscalls.refused import REFUSED


def test_the_profile_refuses_only_what_the_libos_refuses_with_the_same_errno() -> None:
    profile = seccomp_profile()
    # a profile lists names, and the stub's call has none: everything unlisted is allowed
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    refused = {}
    for rule in profile["syscalls"]:
        assert rule["action"] == "SCMP_ACT_ERRNO"
        for name in rule["names"]:
            refused[name] = rule["errnoRet"]
    assert refused, "the profile refuses nothing"
    for name, err in refused.items():
        assert REFUSED[name][0] == err, name
    assert not set(refused) & SUPERVISOR_CALLS
    # the calls that confine the host most stay refused
    for name in ("bpf", "kexec_load", "init_module", "ptrace", "io_uring_setup", "keyctl"):
        assert name in refused
    # the ones the LibOS makes to build an instance do not
    for name in ("unshare", "pivot_root", "setns", "pidfd_getfd", "landlock_restrict_self"):
        assert name not in refused
    assert json.loads(seccomp_profile_text()) == profile


def test_replicas_are_instances_of_their_own_each_with_its_volume_and_port() -> None:
    import yaml

    from occlum.instance.config import default_config_text, parse_config
    from occlum.instance.deploy import k8s_manifest

    config = parse_config(default_config_text()).config
    text = k8s_manifest(
        name="web", image="localhost/web:1", config=config, args=[], port=8080,
        platform_dir="/var/lib/occlum/platform", mrenclave="00", replicas=3,
    )  # fmt: skip
    docs = list(yaml.safe_load_all(text))
    assert [d["metadata"]["name"] for d in docs] == ["web-0", "web-1", "web-2"]
    claims, ports = [], []
    for d in docs:
        assert d["spec"]["replicas"] == 1  # one LibOS per volume
        pod = d["spec"]["template"]["spec"]
        claims += [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                   if "persistentVolumeClaim" in v]  # fmt: skip
        [container] = pod["containers"]
        [p] = container["ports"]
        assert p["containerPort"] == 8080
        ports.append(p["hostPort"])
    assert claims == ["web-0-data", "web-1-data", "web-2-data"]
    assert ports == [8080, 8081, 8082]
