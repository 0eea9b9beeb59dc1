"""``occlum run`` reads the built configuration without pydantic (builtconf.py): what it reads
must be what the validated configuration says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occlum.errors import UserError
from occlum.instance.builtconf import BuiltConfig
from occlum.instance.config import (
    default_config_text,
    normalized_config_text,
    parse_config,
    plan_mounts,
)

CUSTOM = {
    "resource_limits": {"user_space_size": "64MB", "user_space_max_size": "1GB",
                        "max_num_of_threads": 7, "kernel_space_heap_size": "3MB"},
    "process": {"default_stack_size": "1MB", "default_heap_size": "2MB"},
    "entry_points": ["/opt/app", "/bin"],
    "env": {"default": ["A=1", "B=x=y"], "untrusted": ["C"]},
    "feature": {"network": "loopback"},
    "mount": [
        {"target": "/", "type": "unionfs", "options": {"layers": [
            {"target": "/", "type": "sefs", "source": "./build/mount/__ROOT",
             "options": {"MAC": ""}},
            {"target": "/", "type": "sefs", "source": "./run/mount/__ROOT",
             "options": {"autokey_policy": 0}},
        ]}},
        {"target": "/host", "type": "hostfs", "source": "./share", "options": {"readonly": True}},
        {"target": "/data", "type": "sefs", "options": {"autokey_policy": 1, "temporary": True}},
        {"target": "/tmp", "type": "ramfs"},
    ],
}  # fmt: skip


@pytest.mark.parametrize("text", [default_config_text(), json.dumps(CUSTOM)])
def test_the_built_file_reads_as_the_validated_configuration(text: str, tmp_path: Path) -> None:
    config = parse_config(text).config
    built = BuiltConfig.from_bytes(normalized_config_text(config).encode(), "x")
    rl, proc = config.resource_limits, config.process
    assert built.entry_points == tuple(config.entry_points)
    assert built.env_default == tuple(config.env.default)
    assert built.env_untrusted == tuple(config.env.untrusted)
    assert built.network == config.feature.network
    assert built.max_threads == rl.max_num_of_threads
    assert built.user_space_size == rl.user_space_size
    assert built.user_space_max_size == rl.user_space_max_size
    assert built.kernel_space_heap_size == rl.kernel_space_heap_size
    assert (built.default_stack_size, built.default_heap_size, built.default_mmap_size) == (
        proc.default_stack_size, proc.default_heap_size, proc.default_mmap_size,
    )  # fmt: skip
    from occlum.instance import builtconf

    assert builtconf.plan_mounts(built.mounts, tmp_path) == plan_mounts(config, tmp_path)
    for m in config.mount:
        assert built.mount_options(m.target).get("autokey_policy") == m.options.autokey_policy


def test_the_root_layer_and_its_policy(tmp_path: Path) -> None:
    built = BuiltConfig.from_bytes(
        normalized_config_text(parse_config(json.dumps(CUSTOM)).config).encode(), "x"
    )
    assert built.root_upper_layer(tmp_path) == (str(tmp_path / "run" / "mount" / "__ROOT"), 0)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("resource_limits"),
        lambda d: d["resource_limits"].update(user_space_size="lots"),
        lambda d: d["resource_limits"].update(max_num_of_threads="7"),
        lambda d: d.update(entry_points=[1]),
        lambda d: d.update(mount=[{"type": "ramfs"}]),
        lambda d: d["env"].update(default="A=1"),
    ],
)
def test_a_file_the_build_did_not_write_is_one_error_line(damage: object) -> None:
    doc = json.loads(normalized_config_text(parse_config(default_config_text()).config))
    damage(doc)  # type: ignore[operator]
    with pytest.raises(UserError, match=r"^build/Occlum.json.built: malformed; run `occlum build`"):
        BuiltConfig.from_bytes(json.dumps(doc).encode(), "build/Occlum.json.built")
    with pytest.raises(UserError, match="malformed"):
        BuiltConfig.from_bytes(b"[" * 100000, "build/Occlum.json.built")
