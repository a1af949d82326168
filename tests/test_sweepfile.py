"""Sweep files: every problem reported at once with its location; valid files round-trip."""

from __future__ import annotations

import dataclasses
import os
import math
import subprocess
import sys
import tempfile
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwbench.adapter import registry
from hwbench.cli.profile import build_config
from hwbench.errors import ConfigError
from hwbench.precision import ALL, SCENARIOS
from hwbench.measure.settings import AccuracySettings, MeasureSettings, SweepConfig
from hwbench.measure.sweepfile import (ACCURACY_KEYS, MEASURE_KEYS, TOP_KEYS, TORCH_COMPILE_MODES, SweepFileError,
                                       config_doc, load_sweep, parse_sweep, validate)

FIXTURES = Path(__file__).parent / "fixtures" / "sweeps"
CPUS = os.cpu_count() or 1
PER_CORE = f"to {4 * CPUS} (4 x {CPUS} CPUs)"  # threads, concurrency and OpenVINO streams
EXAMPLE = Path(__file__).parents[1] / "examples" / "sweep.toml"


def _problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(SweepFileError) as info:
        parse_sweep(doc, "s.toml")
    return list(info.value.problems)


def test_every_config_field_has_a_sweep_file_key() -> None:
    top = {f.name for f in dataclasses.fields(SweepConfig)} - {"measure", "accuracy"}
    assert set(TOP_KEYS) - {"measure", "accuracy"} == top
    assert set(MEASURE_KEYS) == {f.name for f in dataclasses.fields(MeasureSettings)}
    assert set(ACCURACY_KEYS) == {f.name for f in dataclasses.fields(AccuracySettings)}


def test_example_sweep_file_loads() -> None:
    cfg = load_sweep(EXAMPLE)
    assert cfg.models == ("resnet50", "bert-base") and cfg.adapters == ("ort-cpu", "openvino")
    assert cfg.batch_sizes == (1, 8, 32) and cfg.instance_type == "c7i.xlarge"
    assert cfg.measure == MeasureSettings() and cfg.accuracy == AccuracySettings()
    assert cfg.adapter_options == {"torch": {"compile_mode": "default", "channels_last": True}}


def test_minimal_file_keeps_defaults() -> None:
    cfg = load_sweep(FIXTURES / "minimal.toml")
    assert cfg == SweepConfig(models=("mlp-tiny",), batch_sizes=(1, 4))


def test_many_problems_are_reported_at_once_with_locations() -> None:
    with pytest.raises(ConfigError) as info:
        load_sweep(FIXTURES / "many_problems.toml")
    err = info.value
    assert isinstance(err, SweepFileError)
    text = str(err)
    src = str(FIXTURES / "many_problems.toml")
    assert text.splitlines()[0] == f"{src} has {len(err.problems)} problems:"
    expected = [
        "model: unknown key (did you mean 'models'?)",
        "adapters[0]: unknown adapter 'ort_cpu' (did you mean 'ort-cpu'?)",
        "adapters[1]: unknown adapter 'evil.module:Adapter'",
        "never from a path",
        "precisions: expected a non-empty array",
        "batch_sizes[1]: expected a positive integer up to 65536, got 0",
        "batch_sizes[2]: expected a positive integer up to 65536, got -8",
        "batch_sizes[3]: expected a positive integer up to 65536, got 100000",
        "batch_sizes[4]: expected a positive integer up to 65536, got a string '32'",
        "scenarios: expected an array",
        "trial_timeout_s: expected a duration in seconds above 0 and up to one day (86400), got 1000000000.0",
        f"threads: expected an integer from 0 (runtime default) {PER_CORE}, got a float 2.5",
        "min_iters: unknown key (did you mean min_iters under [measure]?)",
        "measure.min_iters: expected a positive integer, got -3",
        "measure.min_duration_s: expected a duration in seconds above 0",
        "measure.max_cv: expected a coefficient of variation",
        "measure.warmup_seconds: unknown key (did you mean 'warmup_s'?)",
        "accuracy.enabled: expected true or false, got a string 'yes'",
        "accuracy.min_cosine: expected a cosine similarity from -1 to 1, got 2",
    ]
    for needle in expected:
        assert needle in text, f"missing {needle!r} in:\n{text}"
    assert len(err.problems) == 18
    assert all(line.startswith(f"  {src}: ") for line in text.splitlines()[1:])


def test_a_single_problem_is_one_line() -> None:
    with pytest.raises(SweepFileError) as info:
        parse_sweep({"batch_sizes": [0]}, "s.toml")
    assert str(info.value) == "s.toml: batch_sizes[0]: expected a positive integer up to 65536, got 0"


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"measure": {"min_iters": 10, "max_iters": 5}}, "measure.min_iters: 10 is above measure.max_iters (5)"),
        ({"measure": {"min_duration_s": 30, "max_duration_s": 10}}, "measure.min_duration_s: 30 s is above"),
        ({"trial_timeout_s": 2, "measure": {"warmup_s": 1, "min_duration_s": 1}}, "trial_timeout_s: 2 s leaves no time"),
        ({"memory_limit_mb": 10}, "memory_limit_mb: expected 0 (the default) or at least 64 MB"),
        ({"tdp_w": 0}, "tdp_w: expected a power in watts above 0"),
        ({"measure": {"target_p50_rel_halfwidth": 1.0}}, "measure.target_p50_rel_halfwidth: expected a relative half-width"),
        ({"measure": {"target_p50_rel_halfwidth": 0}}, "measure.target_p50_rel_halfwidth: expected a relative half-width"),
        ({"measure": {"min_duration_s": 20}}, "measure.min_duration_s: 20 s is above measure.max_duration_s (10 s)"),
        ({"dims": {"sequence": 0}}, "dims.sequence: expected a positive integer"),
        ({"dims": {"bad\nname": 4}}, 'dims."bad\\nname": dimension name: control characters'),
        ({"models": [""]}, "models[0]: expected a non-empty string"),
        ({"instance_type": 7}, "instance_type: expected a string, got an integer 7"),
        ({"precisions": ["FP16", "fp64"]}, "precisions[1]: unknown precision 'fp64' (did you mean 'fp16'?)"),
        ({"scenarios": ["multistream"]}, "scenarios[0]: unknown scenario 'multistream'"),
        ({"measure": 3}, "measure: expected a table ([measure]), got an integer 3"),
        ({"batch_sizes": [True]}, "batch_sizes[0]: expected a positive integer up to 65536, got a boolean True"),
        ({"trial_timeout_s": math.nan}, "trial_timeout_s: expected a duration"),
        ({"bogus": 1}, "bogus: unknown key; known: models, adapters"),
        ({"batch": [1]}, "batch: unknown key (did you mean 'batch_sizes'?)"),
        ({"adapters": ["/tmp/evil.py"]}, "never from a path"),
        ({"threads": 4 * CPUS + 1}, f"threads: expected an integer from 0 (runtime default) {PER_CORE}, got {4 * CPUS + 1}"),
        ({"concurrency": 4 * CPUS + 1}, f"concurrency: expected an integer from 0 (tuned) {PER_CORE}"),
        ({"tdp_w": math.inf}, "tdp_w: expected a power in watts above 0 and up to 5000, got inf"),
        ({"usd_per_hour": math.nan}, "usd_per_hour: expected a price in USD per hour above 0"),
        ({"idle_power_s": -math.inf}, "idle_power_s: expected a duration in seconds from 0 (off)"),
        ({"accuracy": {"min_cosine": math.nan}}, "accuracy.min_cosine: expected a cosine similarity from -1 to 1, got nan"),
        ({"processes": 0}, "processes: expected an integer from 1 to 64, got 0"),
        ({"adapter_options": {"torch": {"compile_mode": "max-autotun"}}},
         "adapter_options.torch.compile_mode: unknown torch compile mode 'max-autotun' (did you mean 'max-autotune'?)"),
        ({"adapter_options": {"torch": {"compile_mode": 3}}}, "adapter_options.torch.compile_mode: expected a torch compile mode name"),
        ({"adapter_options": {"torch": {"channels_last": "no"}}}, "adapter_options.torch.channels_last: expected true or false"),
        ({"adapter_options": {"torch": {"chanels_last": True}}},
         "adapter_options.torch.chanels_last: unknown key (did you mean 'channels_last'?)"),
        ({"adapter_options": {"openvino": {"num_streams": 0}}}, f"adapter_options.openvino.num_streams: expected an integer from 1 {PER_CORE}, got 0"),
        ({"adapter_options": {"openvino": {"num_streams": 4 * CPUS + 1}}}, "adapter_options.openvino.num_streams: expected an integer from 1"),
        ({"adapter_options": {"opnevino": {}}}, "adapter_options.opnevino: unknown key (did you mean 'openvino'?)"),
        ({"adapter_options": {"torch": 1}}, "adapter_options.torch: expected a table ([adapter_options.torch]), got an integer 1"),
    ],
)
def test_each_problem_kind(doc: dict[str, Any], needle: str) -> None:
    assert any(needle in p for p in _problems(doc)), _problems(doc)


def test_adapter_options_are_kept_by_adapter_name() -> None:
    cfg = parse_sweep({"adapter_options": {"torch": {"compile_mode": " Eager", "channels_last": False},
                                           "openvino": {"num_streams": 1}}})
    assert cfg.adapter_options == {"torch": {"compile_mode": "eager", "channels_last": False}, "openvino": {"num_streams": 1}}
    assert parse_sweep({"adapter_options": {"torch": {}}}).adapter_options == {}  # an empty table sets nothing
    assert SweepConfig.from_dict(cfg.to_dict()) == cfg  # through a run manifest (--resume)


def test_precision_names_are_normalised_and_lists_deduplicated() -> None:
    cfg = parse_sweep({"precisions": ["FP16", " fp32", "fp16"], "batch_sizes": [8, 1, 8]})
    assert cfg.precisions == ("fp16", "fp32") and cfg.batch_sizes == (8, 1)


def test_relative_model_paths_are_relative_to_the_file() -> None:
    cfg = load_sweep(FIXTURES / "relative_model.toml")
    assert cfg.models == (str(FIXTURES.resolve() / "models/net.onnx"), "mlp-tiny", "/abs/other.onnx")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("does-not-exist.toml", "does not exist"),
        ("not_toml.toml", "is not valid TOML: "),
        ("not_utf8.toml", "is not UTF-8 text"),
        (".", "is a directory"),
    ],
)
def test_unreadable_files_give_one_line(name: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_sweep(FIXTURES / name)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_huge_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_sweep(big)


def test_flags_override_the_file() -> None:
    base = load_sweep(FIXTURES / "minimal.toml")
    flags: dict[str, Any] = dict(model=None, adapter="null", batch="16", precision=None, scenario=None,
                                 duration=None, min_iters=7, quick=False, instance_type="m7i.large", threads=None,
                                 device=None, concurrency=None, dim=[], trial_timeout_s=None, tdp_w=None,
                                 no_accuracy=False)
    cfg = build_config(base, **flags)
    assert cfg.models == ("mlp-tiny",) and cfg.adapters == ("null",) and cfg.batch_sizes == (16,)
    assert cfg.measure.min_iters == 7 and cfg.instance_type == "m7i.large"


def _flags(**given: Any) -> dict[str, Any]:
    flags: dict[str, Any] = dict(model="mlp-tiny", adapter=None, batch=None, precision=None, scenario=None,
                                 duration=None, min_iters=None, quick=False, instance_type=None, threads=None,
                                 device=None, concurrency=None, dim=[], trial_timeout_s=None, tdp_w=None,
                                 no_accuracy=False, max_duration=None, ci_target=None)
    return {**flags, **given}


def test_stopping_flags_set_the_measure_keys() -> None:
    cfg = build_config(SweepConfig(), **_flags(max_duration=30.0, ci_target=0.02))
    assert cfg.measure.max_duration_s == 30.0 and cfg.measure.target_p50_rel_halfwidth == 0.02
    quick = build_config(SweepConfig(), **_flags(quick=True, duration=5.0))
    assert quick.measure.min_duration_s == 5.0 and quick.measure.max_duration_s == 5.0  # the cap follows --duration-s
    assert quick.measure.target_p50_rel_halfwidth > MeasureSettings().target_p50_rel_halfwidth


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"max_duration": 0.0}, "--max-duration-s: expected a duration in seconds above 0"),
        ({"max_duration": math.inf}, "--max-duration-s: expected a duration"),
        ({"max_duration": 1.0}, "--max-duration-s 1 is below the minimum duration 2 s (--duration-s)"),
        ({"ci_target": 1.0}, "--ci-target: expected a relative half-width above 0 and below 1"),
        ({"ci_target": -0.01}, "--ci-target: expected a relative half-width"),
        ({"ci_target": math.nan}, "--ci-target: expected a relative half-width"),
    ],
)
def test_bad_stopping_flags_are_one_line_usage_errors(given: dict[str, Any], needle: str) -> None:
    from hwbench.errors import UsageError

    with pytest.raises(UsageError) as info:
        build_config(SweepConfig(), **_flags(**given))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_loading_has_no_side_effects(tmp_path: Path) -> None:
    """No adapter, runtime or model is imported or built, and nothing is written."""
    code = (
        "import sys; from hwbench.measure.sweepfile import load_sweep; load_sweep(sys.argv[1]);"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('device_adapters', 'onnxruntime', 'openvino', 'torch')"
        " or m == 'hwbench.models.build'];"
        "print(heavy)"
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    out = subprocess.run([sys.executable, "-c", code, str(EXAMPLE)], capture_output=True, text=True, cwd=tmp_path,
                         check=True, env={"HWBENCH_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin",
                              **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    assert out.stdout.strip() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# -- property-based --------------------------------------------------------------------

_TOP_KEYS = sorted(set(TOP_KEYS) - {"measure", "accuracy"})
_scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), st.text(max_size=12),
    st.datetimes(), st.dates(), st.times(),
    st.sampled_from([0, -1, 1, 64, 65536, 65537, 86400, 86400.5, 1e-300, "", " ", "fp32", "ort-cpu", "null",
                     "single-stream", "a:b", "../x.onnx"]),
)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                       max_leaves=10)


def _section(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=10), _values, max_size=5)


_documents = st.builds(
    lambda top, extra: {**top, **extra},
    _section([*_TOP_KEYS, "model", "batch", "min_iters"]),
    st.fixed_dictionaries({}, optional={"measure": _section(list(MEASURE_KEYS)) | _values,
                                        "accuracy": _section(list(ACCURACY_KEYS)) | _values}),
)


@settings(max_examples=300, deadline=None)
@given(_documents)
def test_arbitrary_documents_raise_only_config_errors(doc: dict[str, Any]) -> None:
    try:
        cfg = parse_sweep(doc, "s.toml")
    except SweepFileError as e:
        assert e.problems and all("\n" not in p for p in e.problems)
        assert str(e).startswith("s.toml")
        return
    assert all(1 <= b <= 65536 for b in cfg.batch_sizes) and set(cfg.precisions) <= set(ALL)
    assert set(cfg.scenarios) <= set(SCENARIOS) and set(cfg.adapters) <= set(registry.names())
    assert 0 < cfg.trial_timeout_s <= 86400 and cfg.measure.min_iters <= cfg.measure.max_iters


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_files_raise_only_config_errors(content: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.toml"
        path.write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
        try:
            load_sweep(path)
        except ConfigError:
            pass


_BAD_ENTRIES: dict[str, Any] = {
    "batch_sizes": [0], "precisions": ["fp64"], "threads": -1, "trial_timeout_s": 0, "scenarios": [],
    "adapters": ["x:y"], "instance_type": "", "tdp_w": 1e6, "memory_limit_mb": 1, "idle_power_s": -1,
    "device": 3, "concurrency": 1.5, "dims": {"seq": 0}, "models": [""], "nonsense": 1,
    "adapter_options": {"torch": {"compile_mode": "jit"}}, "processes": 65, "usd_per_hour": math.inf,
}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(_BAD_ENTRIES)), min_size=1, unique=True))
def test_every_bad_entry_is_listed(keys: list[str]) -> None:
    problems = _problems({k: _BAD_ENTRIES[k] for k in keys})
    assert len(problems) == len(keys)
    for k in keys:
        assert any(p.startswith(k) for p in problems), (k, problems)


_plain = st.characters(blacklist_categories=("Cs", "Cc"))
_names = st.text(_plain, min_size=1, max_size=30).filter(
    lambda s: s == s.strip() and "/" not in s and not s.lower().endswith(".onnx") and not s.startswith("~"))


@st.composite
def _valid_configs(draw: st.DrawFn) -> SweepConfig:
    min_d = draw(st.floats(1e-3, 600))
    min_i = draw(st.integers(1, 10**6))
    measure = MeasureSettings(
        warmup_s=draw(st.floats(0, 60)), warmup_min_iters=draw(st.integers(0, 1000)), min_duration_s=min_d,
        min_iters=min_i, max_iters=draw(st.integers(min_i, 10**12)), max_duration_s=draw(st.floats(min_d, 86400)),
        max_cv=draw(st.floats(1e-6, 10)), target_p50_rel_halfwidth=draw(st.floats(1e-6, 0.999)),
        min_samples_for_p99=draw(st.integers(1, 10**6)),
    )
    accuracy = AccuracySettings(
        enabled=draw(st.booleans()), min_cosine=draw(st.floats(-1, 1)), min_top1_agreement=draw(st.floats(0, 1)),
        max_mean_rel_err=draw(st.floats(0, 1e6)), min_items=draw(st.integers(1, 65536)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    return SweepConfig(
        models=tuple(draw(st.lists(st.sampled_from(["mlp-tiny", "resnet50", "/abs/m.onnx"]) | _names,
                                   min_size=1, max_size=4, unique=True))),
        adapters=tuple(draw(st.lists(st.sampled_from(registry.names()), max_size=3, unique=True))),
        precisions=tuple(draw(st.lists(st.sampled_from(ALL), min_size=1, unique=True))),
        batch_sizes=tuple(draw(st.lists(st.integers(1, 65536), min_size=1, max_size=5, unique=True))),
        # the server scenario's cross-checks (rates or an SLO, one process) are tested in test_server_scenario.py
        scenarios=tuple(draw(st.lists(st.sampled_from([s for s in SCENARIOS if s != "server"]), min_size=1, unique=True))),
        measure=measure, accuracy=accuracy,
        dims=draw(st.dictionaries(st.text(_plain, min_size=1, max_size=20).filter(lambda s: s.strip() != ""),
                                   st.integers(1, 2**20), max_size=3)),
        instance_type=draw(st.none() | st.text(_plain, min_size=1, max_size=40).filter(str.strip)),
        trial_timeout_s=draw(st.floats(measure.warmup_s + min_d + 1, 86400)),
        threads=draw(st.integers(0, 4 * CPUS)), device=draw(st.text(_plain, max_size=20)),
        concurrency=draw(st.integers(0, 4 * CPUS)), tdp_w=draw(st.none() | st.floats(1e-3, 5000)),
        idle_power_s=draw(st.floats(0, 3600)), memory_limit_mb=draw(st.just(0.0) | st.floats(64, 16 * 2**20)),
        processes=draw(st.integers(1, 64)), usd_per_hour=draw(st.none() | st.floats(1e-6, 10000)),
        adapter_options=draw(st.fixed_dictionaries({}, optional={
            "torch": st.fixed_dictionaries({}, optional={"compile_mode": st.sampled_from(TORCH_COMPILE_MODES),
                                                         "channels_last": st.booleans()}).filter(bool),
            "openvino": st.fixed_dictionaries({"num_streams": st.integers(1, 4 * CPUS)})})),
    )


@settings(max_examples=150, deadline=None)
@given(_valid_configs())
def test_valid_configs_pass_the_model_unchanged(cfg: SweepConfig) -> None:
    """What build_config relies on: a valid config, as a document, validates back to itself."""
    assert validate(config_doc(cfg)) == (cfg, [])


def test_toml_types_without_a_python_twin_are_refused() -> None:
    problems = _problems({"instance_type": datetime(2026, 1, 1), "device": date(2026, 1, 1), "threads": time(1)})
    assert problems == [
        "instance_type: expected a string, got a date-time datetime.datetime(2026, 1, 1, 0, 0)",
        "device: expected a string, got a date datetime.date(2026, 1, 1)",
        f"threads: expected an integer from 0 (runtime default) {PER_CORE}, got a time datetime.time(1, 0)",
    ]
