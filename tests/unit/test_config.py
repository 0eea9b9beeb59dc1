"""Occlum.json validation, env semantics, entry points and the RunSpec built from a config."""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import libos
from occlum.cli.main import cli
from occlum.errors import UserError
from occlum.instance.config import (
    DEFAULT_CONFIG,
    build_env,
    check_entry_point,
    log_level_from_env,
    normalized_config_text,
    parse_config,
    plan_mounts,
)
from occlum.instance.layout import Instance, build_instance, new_instance
from occlum.instance.runspec import to_run_spec
from occlum.kernel.spec import MountSpec

ROOT = {"target": "/", "type": "unionfs", "options": {"layers": [{"target": "/", "type": "sefs"}]}}


def with_mounts(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"mount": [ROOT, *extra]}


# (config, the exact message after "Occlum.json: ")
MALFORMED: list[tuple[Any, str]] = [
    (
        {"resource_limits": {"user_space_size": "12XB"}},
        'resource_limits.user_space_size: "12XB" is not a size (use e.g. "256MB")',
    ),
    (
        {"resource_limits": {"user_space_size": 256}},
        'resource_limits.user_space_size: 256 is not a size (use a string such as "256MB")',
    ),
    (
        {"resource_limits": {"kernel_space_heap_size": "MB"}},
        'resource_limits.kernel_space_heap_size: "MB" is not a size (use e.g. "256MB")',
    ),
    (
        {"resource_limits": {"max_num_of_threads": "32"}},
        'resource_limits.max_num_of_threads: "32" must be an integer',
    ),
    (
        {"resource_limits": {"max_num_of_threads": 0}},
        "resource_limits.max_num_of_threads: 0 is too small (minimum 1)",
    ),
    (
        {"resource_limits": {"user_space_size": "1GB", "user_space_max_size": "512MB"}},
        'resource_limits.user_space_max_size: "512MB" must not be smaller than user_space_size (1GB)',
    ),
    (
        # past 2**63 bytes, setrlimit itself fails when the first program starts
        {"resource_limits": {"user_space_size": "9000000TB"}},
        'resource_limits.user_space_size: "9000000TB" is more than a process can address on '
        'this machine (at most "128TB")',
    ),
    (
        {"resource_limits": {"user_space_max_size": "129TB"}},
        'resource_limits.user_space_max_size: "129TB" is more than a process can address on '
        'this machine (at most "128TB")',
    ),
    (
        {"resource_limits": {"max_num_of_threads": 4, "init_num_of_threads": 8}},
        "resource_limits.init_num_of_threads: 8 must not exceed max_num_of_threads (4)",
    ),
    (
        {"process": {"default_stack_size": "4 MiB"}},
        'process.default_stack_size: "4 MiB" is not a size (use e.g. "256MB")',
    ),
    ({"entry_points": "/bin"}, 'entry_points: "/bin" must be a list'),
    (
        {"entry_points": ["bin"]},
        'entry_points[0]: "bin" is not an absolute path (it must start with /)',
    ),
    (
        {"env": {"default": ["OCCLUM"]}},
        'env.default[0]: "OCCLUM" is not an assignment (use "NAME=value")',
    ),
    (
        {"env": {"untrusted": ["A=B"]}},
        'env.untrusted[0]: "A=B" is not an environment variable name',
    ),
    ({"env": {"default": [1]}}, "env.default[0]: 1 must be a string"),
    ({"metadata": {"debuggable": "yes"}}, 'metadata.debuggable: "yes" must be true or false'),
    (
        {"metadata": {"product_id": 70000}},
        "metadata.product_id: 70000 is too large (maximum 65535)",
    ),
    (
        {"metadata": {"family_id": {"high": "12", "low": "0x0"}}},
        'metadata.family_id.high: "12" is not a 64-bit hex number (use e.g. "0x0")',
    ),
    ({"feature": {"amx": 3}}, "feature.amx: 3 is too large (maximum 2)"),
    ({"feature": {"enable_edmm": 1}}, "feature.enable_edmm: 1 must be true or false"),
    ({"mount": {}}, "mount: {} must be a list"),
    (
        with_mounts({"target": "/data", "type": "nfs"}),
        "mount[1].type: \"nfs\" is not allowed (use one of 'hostfs', 'ramfs', 'sefs', "
        "'unionfs', 'devfs', 'procfs' or 'ext2')",
    ),
    (with_mounts({"type": "ramfs"}), "mount[1].target: is required"),
    (
        with_mounts({"target": "data", "type": "ramfs"}),
        'mount[1].target: "data" is not an absolute path (it must start with /)',
    ),
    (
        with_mounts({"target": "/host", "type": "hostfs"}),
        "mount[1].source: is required for a hostfs mount (the host directory to expose)",
    ),
    (
        {"mount": [{"target": "/", "type": "unionfs"}]},
        "mount[0].options.layers: is required for a unionfs mount (a list of sefs layers)",
    ),
    (
        with_mounts({"target": "/tmp", "type": "ramfs"}, {"target": "/tmp", "type": "ramfs"}),
        'mount[2].target: mounts "/tmp" a second time (each target may appear once)',
    ),
    (
        {"mount": [{"target": "/tmp", "type": "ramfs"}]},
        'mount: has no file system at "/" (add a unionfs or sefs mount with target "/")',
    ),
    (
        with_mounts({"target": "/t", "type": "ramfs", "options": {"layers": []}}),
        "mount[1].options.layers: is only allowed for a unionfs mount, not ramfs",
    ),
    (
        with_mounts({"target": "/h", "type": "hostfs", "source": "./\0"}),
        'mount[1].source: "./\\u0000" contains a NUL byte',
    ),
    ([1, 2], "the top level must be a JSON object {...}"),
]


@pytest.mark.parametrize(("config", "message"), MALFORMED)
def test_malformed_config_gives_one_precise_line(config: Any, message: str) -> None:
    with pytest.raises(UserError) as e:
        parse_config(json.dumps(config))
    assert str(e.value) == f"Occlum.json: {message}"


@pytest.mark.parametrize(("config", "message"), MALFORMED)
def test_malformed_config_through_the_cli(tmp_path: Path, config: Any, message: str) -> None:
    inst = new_instance(tmp_path / "app")
    inst.config_path.write_text(json.dumps(config))
    result = CliRunner().invoke(cli, ["--instance-dir", str(inst.path), "build"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr == f"occlum: error: Occlum.json: {message}\n"
    assert "Traceback" not in result.output


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(
        UserError, match=r"^Occlum\.json: line 3, column 2: invalid JSON: Extra data$"
    ):
        parse_config('{\n  "entry_points": ["/bin"]\n}}')
    with pytest.raises(UserError, match=r"line 1, column 19: invalid JSON"):
        parse_config('{"entry_points": [,]}')


def test_default_template_is_valid_and_matches_occlum_shape() -> None:
    loaded = parse_config(json.dumps(DEFAULT_CONFIG))
    assert loaded.warnings == ()
    c = loaded.config
    assert c.entry_points == ["/bin"]
    assert c.resource_limits.user_space_size == 300 << 20
    assert c.process.default_stack_size == 4 << 20
    assert [m.target for m in c.mount] == ["/", "/host", "/proc", "/dev", "/tmp"]
    assert c.mount[0].options.layers is not None and len(c.mount[0].options.layers) == 2


def test_empty_config_gets_the_defaults() -> None:
    c = parse_config("{}").config
    assert c.env.default == ["OCCLUM=yes"]
    assert c.mount[0].target == "/"


def test_unknown_keys_warn_but_load() -> None:
    loaded = parse_config(
        json.dumps({"resource_limits": {"foo": 1}, "bar": {}, "mount": [ROOT | {"extra": 1}]})
    )
    assert loaded.warnings == (
        "Occlum.json: unknown key bar (ignored)",
        "Occlum.json: unknown key resource_limits.foo (ignored)",
        "Occlum.json: unknown key mount[0].extra (ignored)",
    )


def test_unknown_keys_are_shown_by_build(tmp_path: Path) -> None:
    inst = new_instance(tmp_path / "app")
    inst.config_path.write_text(json.dumps({"fancy": 1}))
    result = CliRunner().invoke(cli, ["--instance-dir", str(inst.path), "build"])
    assert result.exit_code == 0, result.output
    assert "occlum: warning: Occlum.json: unknown key fancy (ignored)" in result.stderr


def test_legacy_env_list_and_sizes() -> None:
    c = parse_config(
        json.dumps({"env": ["A=1"], "resource_limits": {"user_space_size": "2GB"}})
    ).config
    assert c.env.default == ["A=1"]
    assert c.resource_limits.user_space_size == 2 << 30
    c = parse_config(json.dumps({"process": {"default_heap_size": "4096B"}})).config
    assert c.process.default_heap_size == 4096


# --- env semantics ------------------------------------------------------------------------


def test_only_default_and_named_untrusted_vars_reach_the_program() -> None:
    c = parse_config(
        json.dumps(
            {
                "env": {
                    "default": ["OCCLUM=yes", "HOME=/root", "X=a=b"],
                    "untrusted": ["HOME", "EXTRA", "NOTSET"],
                }
            }
        )
    ).config
    host = {"HOME": "/home/me", "EXTRA": "1", "PATH": "/usr/bin", "SECRET": "s"}
    env = dict(build_env(c, host))
    assert env == {"OCCLUM": "yes", "HOME": "/home/me", "X": "a=b", "EXTRA": "1"}


def test_default_order_is_kept_and_untrusted_override_in_place() -> None:
    c = parse_config(json.dumps({"env": {"default": ["A=1", "B=2"], "untrusted": ["A"]}})).config
    assert build_env(c, {"A": "host"}) == (("A", "host"), ("B", "2"))


# --- entry points -------------------------------------------------------------------------


def test_entry_points() -> None:
    c = parse_config(json.dumps({"entry_points": ["/bin", "/opt/app/"]})).config
    assert check_entry_point(c, "/bin/ls") == "/bin/ls"
    assert check_entry_point(c, "/opt/app/bin/x") == "/opt/app/bin/x"
    assert check_entry_point(c, "/bin/sub/../ls") == "/bin/ls"
    for bad in ("/binx/ls", "/usr/bin/ls", "/bin/../etc/x", "/opt/application"):
        with pytest.raises(UserError, match="is not under any entry point"):
            check_entry_point(c, bad)
    with pytest.raises(UserError, match="must be absolute"):
        check_entry_point(c, "ls")


def test_entry_point_root_allows_everything() -> None:
    c = parse_config(json.dumps({"entry_points": ["/"]})).config
    assert check_entry_point(c, "/usr/bin/x") == "/usr/bin/x"


# --- mounts and the RunSpec ---------------------------------------------------------------


def test_plan_mounts_adds_proc_and_dev_like_occlum(tmp_path: Path) -> None:
    c = parse_config(
        json.dumps(with_mounts({"target": "/host", "type": "hostfs", "source": "data"}))
    ).config
    mounts = plan_mounts(c, tmp_path)
    assert mounts == (
        MountSpec("/proc", "procfs"),
        MountSpec("/dev", "devfs"),
        MountSpec("/host", "hostfs", str(tmp_path.resolve() / "data")),
    )


def test_unsupported_mount_types_are_clear_errors(tmp_path: Path) -> None:
    c = parse_config(
        json.dumps(with_mounts({"target": "/data", "type": "ext2", "source": "d"}))
    ).config
    with pytest.raises(UserError, match=r"^mount type ext2 at /data is not supported yet$"):
        plan_mounts(c, tmp_path)
    sefs = plan_mounts(
        parse_config(json.dumps(with_mounts({"target": "/data", "type": "sefs"}))).config, tmp_path
    )
    data = next(m for m in sefs if m.target == "/data")
    assert data.fs_type == "sefs" and data.source == str((tmp_path / "run/mount/data").resolve())
    c = parse_config(json.dumps({"mount": [{"target": "/", "type": "ramfs"}]})).config
    with pytest.raises(UserError, match='mount type ramfs at "/" is not supported'):
        plan_mounts(c, tmp_path)


def test_log_level() -> None:
    assert log_level_from_env({}) == "warn"
    assert log_level_from_env({"OCCLUM_LOG_LEVEL": "TRACE"}) == "trace"
    with pytest.raises(UserError, match="OCCLUM_LOG_LEVEL='loud' is not a log level"):
        log_level_from_env({"OCCLUM_LOG_LEVEL": "loud"})


def test_to_run_spec_uses_the_built_config(tmp_path: Path) -> None:
    inst = new_instance(tmp_path / "app")
    with pytest.raises(UserError, match=r"^instance not built: run `occlum build` first$"):
        to_run_spec(inst, ["/bin/hello"], {})
    config = json.loads(inst.config_path.read_text())
    config["env"] = {"default": ["OCCLUM=yes"], "untrusted": ["TERM"]}
    config["resource_limits"]["max_num_of_threads"] = 7
    inst.config_path.write_text(json.dumps(config))
    build_instance(inst)
    inst.config_path.write_text("{ broken")  # not read by run: the built config is
    spec = to_run_spec(inst, ["/bin/hello", "a", "b"], {"TERM": "xterm", "HOME": "/x"})
    assert spec.argv == ("/bin/hello", "a", "b")
    assert spec.root_dir == str(inst.built_image_dir)
    assert spec.instance_dir == str(inst.path)
    assert dict(spec.env) == {"OCCLUM": "yes", "TERM": "xterm"}
    assert spec.max_threads == 7
    assert spec.user_space_size == 300 << 20
    assert spec.default_stack_size == 4 << 20
    assert spec.log_level == "warn"
    targets = [m.target for m in spec.mounts]
    assert targets == ["/host", "/proc", "/dev", "/tmp"]
    assert spec.mounts[0].source == str(inst.path)
    assert to_run_spec(inst, ["/bin/x"], {"OCCLUM_LOG_LEVEL": "debug"}).log_level == "debug"
    assert (
        to_run_spec(Instance.at(inst.path), ["/bin/x"], {}, log_level="trace").log_level == "trace"
    )


def test_a_run_checks_the_sigstruct_once_and_keys_its_volumes_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the SIGSTRUCT whose MRENCLAVE matched is the one the sealing keys and /dev/sgx use: one
    # read and one signature check per run (it was one per SEFS volume, plus two)
    from occlum.enclave import build_seal, sigstruct

    inst = new_instance(tmp_path / "app")
    inst.config_path.write_text(
        json.dumps(with_mounts({"target": "/data", "type": "sefs", "source": "./data"}))
    )
    build_instance(inst)
    checks = []
    real = sigstruct.verify_sigstruct

    def counted(sig: sigstruct.Sigstruct) -> None:
        checks.append(sig.mrenclave)
        real(sig)

    monkeypatch.setattr(build_seal, "verify_sigstruct", counted)
    spec = to_run_spec(inst, ["/bin/x"], {})
    assert len(checks) == 1
    assert spec.enclave is not None and spec.enclave.mrenclave == checks[0]
    assert spec.root_upper_key is not None and all(
        m.key for m in spec.mounts if m.fs_type == "sefs"
    )
    again = to_run_spec(inst, ["/bin/x"], {})  # the same keys from the same build
    assert again.root_upper_key == spec.root_upper_key
    assert [m.key for m in again.mounts] == [m.key for m in spec.mounts]


def test_missing_hostfs_source_is_reported_at_run(tmp_path: Path) -> None:
    inst = new_instance(tmp_path / "app")
    inst.config_path.write_text(
        json.dumps(with_mounts({"target": "/data", "type": "hostfs", "source": "./nope"}))
    )
    build_instance(inst)
    with pytest.raises(UserError, match=r"mount /data: host directory .*/nope does not exist"):
        to_run_spec(inst, ["/bin/x"], {})


# --- any Occlum.json: a configuration or one line, never a traceback -------------------------


def _value_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _value_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _value_paths(v, (*prefix, i))
    return out


_ODD_TEXT = st.sampled_from(
    ["", "/", "//", "/bin", "..", "/a/../..", "$HOME", "${X}", "./run/x", "./\0", "\0", "sefs",
     "hostfs", "unionfs", "0x", "0xffffffffffffffffff", "1KB", "-1MB", "1.5GB", "MB", " 1 GB ",
     "99999999999999999999TB", "\uff11MB", "A=b", "=x"]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=12), _ODD_TEXT,
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.dictionaries(
            st.sampled_from(["target", "type", "source", "options", "layers", "MAC", "x"]),
            kids,
            max_size=4,
        ),
    ),
    max_leaves=8,
)
_MOUNTS = st.fixed_dictionaries(
    {
        "target": st.one_of(st.sampled_from(["/", "/h", "/tmp", "/proc", "/a/b"]), _ODD_TEXT),
        "type": st.sampled_from(["sefs", "hostfs", "unionfs", "ramfs", "devfs", "procfs", "x"]),
    },
    optional={
        "source": st.one_of(st.text(max_size=8), _ODD_TEXT),
        "options": st.dictionaries(
            st.sampled_from(
                [
                    "layers",
                    "MAC",
                    "readonly",
                    "temporary",
                    "autokey_policy",
                    "integrity_only",
                    "cache_size",
                    "disk_size",
                ]
            ),
            _VALUES,
            max_size=3,
        ),
    },
)


@settings(
    max_examples=libos.examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.lists(st.tuples(st.sampled_from(_value_paths(DEFAULT_CONFIG)), _VALUES), max_size=3),
    st.lists(_MOUNTS, max_size=3),
)
def test_any_configuration_loads_or_is_one_line(
    changes: list[tuple[tuple[Any, ...], Any]], mounts: list[dict[str, Any]]
) -> None:
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    cfg["mount"] += mounts
    for path, value in changes:
        node = cfg
        with contextlib.suppress(KeyError, IndexError, TypeError):
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
    try:
        config = parse_config(json.dumps(cfg)).config
        with tempfile.TemporaryDirectory() as d:
            plan_mounts(config, Path(d))
        normalized_config_text(config)
        build_env(config, {"EXAMPLE": "1"})
        check_entry_point(config, "/bin/x")
    except UserError as e:
        assert "\n" not in str(e), str(e)
