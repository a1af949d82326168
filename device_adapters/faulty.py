"""The fault-injection adapter, for hwbench's own tests: it crashes, hangs, leaks or raises on demand.

Registered only when HWBENCH_TEST_ADAPTERS=1. Without a matching fault it behaves
like the null adapter (fast, valid with quick settings). Faults are chosen by the
environment variable HWBENCH_FAULT, which each worker inherits from the CLI:

    HWBENCH_FAULT = RULE[,RULE...]
    RULE          = KIND[@SELECTOR][:PHASE]
    SELECTOR      = TOKEN[+TOKEN...]   every token must match; none (or "*") matches every trial
    TOKEN         = N or bN (batch size N) | a precision (fp16) | a scenario (offline)
                  | pN (the N-th of a trial's --processes workers, from HWBENCH_PROCESS)
    PHASE         = run (default: the first run() call, in warm-up) | prepare
                  | exit (at interpreter exit, after the worker saved its record)

Because every trial runs in its own worker, a selector on the batch size faults
exactly one trial of a sweep deterministically: ``crash@2,hang@4`` with batch sizes
1,2,4,8 crashes the b2 trial and hangs the b4 one. Kinds:

    crash       SIGSEGV (reads address 0)          abort    SIGABRT (os.abort)
    sigkill     SIGKILL to itself, as the kernel's OOM killer would
    exit        exits at once with code 17         raise    a RuntimeError (-> status=error)
    hang        sleeps forever (-> the trial timeout)
    leak        allocates and touches 16 MB every 20 ms until the memory limit kills it;
                stops at HWBENCH_FAULT_LEAK_CAP_MB (default 2048) and then hangs
    importerror this module's import raises ImportError (no selector)
    probeerror  probe() raises RuntimeError (no selector)
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

from hwbench.adapter import ConcurrentRunner, Probe
from hwbench.adapter.concurrency import ThreadedRunner
from hwbench.adapter.kit import NullBase
from hwbench.models.spec import ModelSpec
from hwbench.precision import ALL, SCENARIOS

FAULT_ENV = "HWBENCH_FAULT"
LEAK_CAP_ENV = "HWBENCH_FAULT_LEAK_CAP_MB"
EXIT_CODE = 17
TRIAL_KINDS = ("crash", "abort", "sigkill", "exit", "raise", "hang", "leak")
MODULE_KINDS = ("importerror", "probeerror")
PHASES = ("run", "prepare", "exit")
LEAK_STEP_MB = 16


@dataclass(frozen=True)
class Fault:
    """One rule of HWBENCH_FAULT."""

    kind: str
    tokens: tuple[str, ...] = ()  # empty: every trial
    phase: str = "run"

    def matches(self, batch_size: int, precision: str, scenario: str) -> bool:
        return all(_token_matches(t, batch_size, precision, scenario) for t in self.tokens)


def _token_matches(token: str, batch_size: int, precision: str, scenario: str) -> bool:
    if token.isdigit():
        return int(token) == batch_size
    if token.startswith("b") and token[1:].isdigit():
        return int(token[1:]) == batch_size
    if token.startswith("p") and token[1:].isdigit():
        return token[1:] == os.environ.get("HWBENCH_PROCESS", "1")
    return token in (precision, scenario)


def parse_faults(text: str) -> list[Fault]:
    """Parse HWBENCH_FAULT; ValueError names the first bad rule."""
    faults = []
    for rule in (r.strip() for r in text.split(",")):
        if not rule:
            continue
        body, _, phase = rule.partition(":")
        kind, _, selector = body.partition("@")
        kind, phase = kind.strip().lower(), (phase.strip().lower() or "run")
        if kind not in TRIAL_KINDS + MODULE_KINDS:
            raise ValueError(f"{FAULT_ENV}: unknown fault kind {kind!r} in {rule!r}; kinds: {', '.join(TRIAL_KINDS + MODULE_KINDS)}")
        if phase not in PHASES:
            raise ValueError(f"{FAULT_ENV}: unknown phase {phase!r} in {rule!r}; phases: {', '.join(PHASES)}")
        tokens = tuple(t.strip().lower() for t in selector.split("+") if t.strip() and t.strip() != "*")
        for t in tokens:
            if not (t.isdigit() or (t[:1] in ("b", "p") and t[1:].isdigit()) or t in ALL or t in SCENARIOS):
                raise ValueError(f"{FAULT_ENV}: cannot select on {t!r} in {rule!r}: use N, bN, pN, a precision or a scenario")
        if kind in MODULE_KINDS and (tokens or phase != "run"):
            raise ValueError(f"{FAULT_ENV}: {kind} takes no selector or phase, got {rule!r}")
        faults.append(Fault(kind, tokens, phase))
    return faults


def _module_kinds() -> set[str]:
    try:
        return {f.kind for f in parse_faults(os.environ.get(FAULT_ENV, "")) if f.kind in MODULE_KINDS}
    except ValueError:
        return set()  # reported by probe()


if "importerror" in _module_kinds():
    # What a vendor adapter's import looks like when its shared library is missing.
    raise ImportError("libfaulty.so.1: cannot open shared object file: No such file or directory (injected by HWBENCH_FAULT)")


def _hang() -> None:
    while True:
        time.sleep(3600)


def _leak() -> None:
    cap_mb = int(os.environ.get(LEAK_CAP_ENV, "2048"))
    hoard = []
    for _ in range(max(1, cap_mb // LEAK_STEP_MB)):
        hoard.append(bytearray(b"\x01") * (LEAK_STEP_MB << 20))  # filled, so every page is resident
        time.sleep(0.02)
    _hang()  # cap reached without being stopped: let the timeout end it


def inject(kind: str, where: str) -> None:
    """Perform one fault. Every kind but 'raise' ends or stalls the process."""
    print(f"faulty: injecting {kind} at {where}", file=sys.stderr, flush=True)
    if kind == "crash":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "exit":
        os._exit(EXIT_CODE)
    elif kind == "raise":
        raise RuntimeError(f"injected fault at {where}")
    elif kind == "hang":
        _hang()
    elif kind == "leak":
        _leak()
    time.sleep(5)  # a signal may take a moment to land; never carry on as if nothing happened
    raise RuntimeError(f"fault {kind} did not end the worker")


class FaultyAdapter(NullBase):
    """The null adapter's do-nothing base (hwbench.adapter.kit.NullBase) plus the faults HWBENCH_FAULT selects."""

    name = "faulty"
    description = "test only: crashes, hangs, leaks or raises on demand (HWBENCH_FAULT)"

    @classmethod
    def probe(cls) -> Probe:
        try:
            faults = parse_faults(os.environ.get(FAULT_ENV, ""))
        except ValueError as e:
            return Probe.missing(str(e))
        if any(f.kind == "probeerror" for f in faults):
            raise RuntimeError("injected probe failure (HWBENCH_FAULT=probeerror)")
        return Probe(available=True, devices=("none",))

    def check(self, model: ModelSpec, precision: str, batch_size: int, scenario: str) -> str | None:
        self._scenario = scenario
        return super().check(model, precision, batch_size, scenario)

    def _fire(self, phase: str) -> None:
        for f in self._faults:
            if f.kind in TRIAL_KINDS and f.matches(self._batch, self._precision, self._scenario):
                where = f"{f.phase} (b{self._batch} {self._precision} {self._scenario})"
                if f.phase == phase:
                    inject(f.kind, where)
                elif f.phase == "exit" and phase == "prepare":
                    atexit.register(inject, f.kind, where)  # as a runtime's teardown that crashes or hangs

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        self._faults = parse_faults(os.environ.get(FAULT_ENV, ""))
        self._batch, self._precision = batch_size, precision
        self._scenario = getattr(self, "_scenario", "single-stream")
        self._armed = True
        super().prepare(model, precision, batch_size, inputs)
        self._fire("prepare")

    def run(self) -> None:
        if self._armed:
            self._armed = False
            self._fire("run")

    def open_concurrent(self, concurrency: int) -> ConcurrentRunner:
        return ThreadedRunner(lambda slot: self.run(), max(1, concurrency or 2))
