"""The fleet MIP: against brute-force enumeration on small random instances, and hand-solved cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import linprog

from hwbench.errors import UsageError
from hwbench.analyse.demand import parse_workload
from hwbench.analyse.planner import Capacity, Option, solve


def workload(classes: dict, types: list[str], **pool):
    return parse_workload({"classes": classes, "pool": {"instance_types": types, **pool}})


def brute_force(w, caps: list[Capacity], options: list[Option]) -> float:
    """Cheapest whole-instance counts, each count vector checked for a feasible routing by an LP."""
    cap = {(c.cls, c.instance_type): c.capacity_rps * (1 - w.pool.headroom) for c in caps}
    classes = w.classes
    pairs = [(k, o) for k, c in enumerate(classes) for o, opt in enumerate(options)
             if (c.name, opt.instance_type) in cap and (opt.pricing != "spot" or c.interruptible)]
    eff = {(k, o): cap[(classes[k].name, options[o].instance_type)]
           * (1 - (w.pool.spot_interruption_derate if options[o].pricing == "spot" else 0)) for k, o in pairs}
    rate = [c.rates_rps[0] for c in classes]
    bounds = [math.ceil(sum(rate[k] / eff[(k, oo)] for k, oo in pairs if oo == o) + 1e-9) for o in range(len(options))]
    best = math.inf
    for n in itertools.product(*(range(b + 1) for b in bounds)):
        cost = sum(ni * opt.usd_per_hour for ni, opt in zip(n, options))
        if cost >= best:
            continue
        if any(sum(n[o] for o, opt in enumerate(options) if opt.instance_type == t) > m for t, m in w.pool.max_count.items()):
            continue
        a_eq = np.zeros((len(classes), len(pairs)))
        a_ub = np.zeros((len(options), len(pairs)))
        for j, (k, o) in enumerate(pairs):
            a_eq[k, j] = 1
            a_ub[o, j] = rate[k] / eff[(k, o)]
        r = linprog(np.zeros(len(pairs)), A_ub=a_ub, b_ub=np.asarray(n, dtype=float), A_eq=a_eq, b_eq=np.ones(len(classes)),
                    bounds=[(0, 1)] * len(pairs), method="highs")
        if r.status == 0:
            best = cost
    return best


@pytest.mark.parametrize("seed", range(16))
def test_equals_brute_force_on_small_random_instances(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes, n_types = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    types = [f"t{i}" for i in range(n_types)]
    classes = {f"c{k}": {"model": "m", "rate_rps": float(rng.uniform(5, 60)), "slo_p99_ms": 100.0,
                         "interruptible": bool(rng.integers(0, 2))} for k in range(n_classes)}
    caps = [Capacity(c, t, float(rng.uniform(15, 50)), "given: random test") for c in classes for t in types
            if rng.uniform() < 0.8 or t == "t0"]
    options = [Option(t, "on-demand", float(rng.uniform(0.2, 2.0))) for t in types]
    options += [Option(t, "spot", o.usd_per_hour * float(rng.uniform(0.3, 0.9))) for t, o in zip(types, options) if rng.uniform() < 0.5]
    pool = {"headroom": float(rng.choice([0.0, 0.1])), "spot_interruption_derate": float(rng.choice([0.0, 0.2]))}
    if rng.uniform() < 0.5:
        pool["max_count"] = {types[-1]: int(rng.integers(0, 3))}
    w = workload(classes, types, **pool)
    expected = brute_force(w, caps, options)
    try:
        plan = solve(w, caps, options)
    except UsageError:
        assert expected == math.inf
        return
    assert plan.usd_per_hour == pytest.approx(expected, abs=1e-9)
    for route in plan.hours[0].routing.values():
        assert sum(route.values()) == pytest.approx(1.0, abs=1e-7)


def test_hand_solved_split_is_cheaper_than_either_homogeneous_fleet() -> None:
    # 150 req/s; A serves 100 at $1.00, B serves 60 at $0.70. 2 A = $2.00, 3 B = $2.10, 1 A + 1 B = $1.70.
    w = workload({"a": {"model": "m", "rate_rps": 150, "slo_p99_ms": 100}}, ["A", "B"])
    caps = [Capacity("a", "A", 100, "given: hand"), Capacity("a", "B", 60, "given: hand")]
    opts = [Option("A", "on-demand", 1.0), Option("B", "on-demand", 0.7)]
    plan = solve(w, caps, opts)
    assert plan.usd_per_hour == pytest.approx(1.7)
    assert plan.hours[0].counts == {"A/on-demand": 1, "B/on-demand": 1}
    route = plan.hours[0].routing["a"]
    assert route["A/on-demand"] * 150 <= 100 + 1e-6 and route["B/on-demand"] * 150 <= 60 + 1e-6
    assert plan.status == "optimal" and plan.mip_gap <= 1e-9 and plan.solve_time_s > 0
    # $ per 1M requests: the whole $1.70/hour over 150 x 3600 requests
    assert plan.class_usd_per_1m["a"] == pytest.approx(1.7 / (150 * 3600) * 1e6)


def test_continuous_routing_is_strictly_cheaper_than_slicing() -> None:
    # Whole-class slices (slice_factor 1) must put all 150 req/s on one type: $2.00; halves: 75 on each, 1 A + 2 B = $2.40
    # or 2 A = $2.00. Continuous 0.6/0.4 fills 1 A + 1 B exactly: $1.70.
    w = workload({"a": {"model": "m", "rate_rps": 150, "slo_p99_ms": 100}}, ["A", "B"])
    caps = [Capacity("a", "A", 100, "given: hand"), Capacity("a", "B", 60, "given: hand")]
    opts = [Option("A", "on-demand", 1.0), Option("B", "on-demand", 0.7)]
    assert solve(w, caps, opts, slice_factor=1).usd_per_hour == pytest.approx(2.0)
    assert solve(w, caps, opts, slice_factor=2).usd_per_hour == pytest.approx(2.0)
    assert solve(w, caps, opts, slice_factor=5).usd_per_hour == pytest.approx(1.7)  # 0.6 is a multiple of 1/5
    assert solve(w, caps, opts).usd_per_hour == pytest.approx(1.7)


def test_two_classes_share_instances_by_load() -> None:
    # Each class alone needs 0.5 of an A: together one A ($1) instead of two.
    w = workload({"x": {"model": "m", "rate_rps": 50, "slo_p99_ms": 100}, "y": {"model": "n", "rate_rps": 10, "slo_p99_ms": 100}}, ["A"])
    caps = [Capacity("x", "A", 100, "given: hand"), Capacity("y", "A", 20, "given: hand")]
    plan = solve(w, caps, [Option("A", "on-demand", 1.0)])
    assert plan.hours[0].counts == {"A/on-demand": 1}
    assert plan.class_usd_per_1m["x"] == pytest.approx(0.5 / (50 * 3600) * 1e6)  # half the instance's load, half its cost


def test_spot_only_for_interruptible_classes_with_derating() -> None:
    w = workload({"live": {"model": "m", "rate_rps": 90, "slo_p99_ms": 100},
                  "batch": {"model": "m", "rate_rps": 90, "slo_p99_ms": 100, "interruptible": True}},
                 ["A"], pricing=["on-demand", "spot"], spot_interruption_derate=0.1)
    caps = [Capacity("live", "A", 100, "given"), Capacity("batch", "A", 100, "given")]
    plan = solve(w, caps, [Option("A", "on-demand", 1.0), Option("A", "spot", 0.3)])
    h = plan.hours[0]
    assert h.routing["live"] == {"A/on-demand": pytest.approx(1.0)}
    assert h.counts == {"A/on-demand": 1, "A/spot": 1}  # 90 req/s fits one spot instance derated to 90
    w2 = workload({"batch": {"model": "m", "rate_rps": 91, "slo_p99_ms": 100, "interruptible": True}},
                  ["A"], pricing=["spot"], spot_interruption_derate=0.1)
    assert solve(w2, [Capacity("batch", "A", 100, "given")], [Option("A", "spot", 0.3)]).hours[0].counts == {"A/spot": 2}


def test_caps_push_load_to_dearer_hardware_and_infeasible_names_the_class() -> None:
    w = workload({"a": {"model": "m", "rate_rps": 250, "slo_p99_ms": 100}}, ["A", "B"], max_count={"A": 1})
    caps = [Capacity("a", "A", 100, "given"), Capacity("a", "B", 60, "given")]
    opts = [Option("A", "on-demand", 1.0), Option("B", "on-demand", 1.5)]
    plan = solve(w, caps, opts)
    assert plan.hours[0].counts == {"A/on-demand": 1, "B/on-demand": 3}
    tight = workload({"a": {"model": "m", "rate_rps": 250, "slo_p99_ms": 100}}, ["A", "B"], max_count={"A": 1, "B": 2})
    with pytest.raises(UsageError, match="class 'a'.*caps allow"):
        solve(tight, caps, opts)
    with pytest.raises(UsageError, match="class 'b' .*cannot be served.*spot is only for interruptible"):
        solve(workload({"a": {"model": "m", "rate_rps": 1, "slo_p99_ms": 9, "interruptible": True}, "b": {"model": "m", "rate_rps": 1, "slo_p99_ms": 9}},
                       ["A"], pricing=["spot"]), [Capacity("a", "A", 5, "given"), Capacity("b", "A", 5, "given")],
              [Option("A", "spot", 0.3)])
    with pytest.raises(UsageError, match="class 'a' .*no capacity at its p99 SLO of 100 ms"):
        solve(w, [Capacity("a", "C", 1, "given")], opts)


def test_hourly_profile_scales_elastic_capacity_and_keeps_committed_all_day() -> None:
    profile = [10.0] * 12 + [190.0] * 12
    w = workload({"a": {"model": "m", "hourly_rps": profile, "slo_p99_ms": 100}}, ["A"], pricing=["on-demand", "reserved"])
    caps = [Capacity("a", "A", 100, "given")]
    # reserved at $0.6 every hour vs on-demand at $1 only when needed: 1 reserved (all day) + 1 on-demand at the peak
    plan = solve(w, caps, [Option("A", "on-demand", 1.0), Option("A", "reserved", 0.6)])
    assert plan.hours[0].counts == {"A/reserved": 1}
    assert plan.hours[23].counts == {"A/reserved": 1, "A/on-demand": 1}
    assert plan.usd_per_hour == pytest.approx(0.6 + 0.5 * 1.0)
    assert plan.autoscaling_bounds() == {"A/on-demand": (0, 1), "A/reserved": (1, 1)}


def test_energy_objective_prefers_the_frugal_type_at_equal_price() -> None:
    w = workload({"a": {"model": "m", "rate_rps": 50, "slo_p99_ms": 100}}, ["A", "B"], objective="cost+energy", usd_per_kwh=0.5)
    caps = [Capacity("a", "A", 100, "given", j_per_request=50.0), Capacity("a", "B", 100, "given", j_per_request=1.0)]
    plan = solve(w, caps, [Option("A", "on-demand", 1.0), Option("B", "on-demand", 1.0)])
    assert plan.hours[0].counts == {"B/on-demand": 1}
    assert plan.energy_usd_per_hour == pytest.approx(50 * 3600 * 1.0 / 3.6e6 * 0.5)


def test_hour_by_hour_equals_one_program_over_the_day() -> None:
    rng = np.random.default_rng(7)
    classes = {"a": {"model": "m", "hourly_rps": [float(r) for r in rng.uniform(0, 120, 24)], "slo_p99_ms": 100},
               "b": {"model": "m", "rate_rps": 35.0, "slo_p99_ms": 100}}
    w = workload(classes, ["A", "B"], pricing=["on-demand", "reserved"])
    caps = [Capacity(c, t, cap, "given") for c in classes for t, cap in (("A", 100.0), ("B", 45.0))]
    elastic = [Option("A", "on-demand", 1.0), Option("B", "on-demand", 0.55)]
    by_hour = solve(w, caps, elastic)
    joint = solve(w, caps, elastic + [Option("A", "reserved", 1000.0)])  # a committed option forces one program
    assert by_hour.usd_per_hour == pytest.approx(joint.usd_per_hour, abs=1e-9)
    assert [h.usd_per_hour for h in by_hour.hours] == pytest.approx([h.usd_per_hour for h in joint.hours], abs=1e-9)
    # routings with the same cost may differ, so may the per-class shares; each plan's shares add up to its whole cost
    for plan in (by_hour, joint):
        spent = sum(plan.class_usd_per_1m[c.name] / 1e6 * sum(c.rates_rps) * 3600 for c in w.classes)
        assert spent == pytest.approx(plan.usd_per_hour * 24, rel=1e-9)
