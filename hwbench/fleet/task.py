"""What runs on one cluster node: the normal sweep into a local run folder, mirrored to the store as it goes.

The Ray task holds the node's whole CPU and accelerator share for its duration; inside it the
sweep runner starts a fresh worker process per trial, with its timeouts and fingerprint, exactly
as `hwbench profile` does. Each completed trial is mirrored to the store at once
(hwbench.results.remote): a node that dies loses only its unfinished trial. Before starting,
the node pulls what the store already holds of its run folder and the runner resumes it, so a
re-run adds only the missing trials, with no duplicates.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hwbench.results.store import safe_name

# Non-secret settings a node needs to reach the same store (credentials: each node's own provider chain).
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
                "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT", "HWBENCH_CACHE")
FLEET_JSON = "fleet.json"


@dataclass
class NodeJob:
    """One (group, node) task: the sweep and where its run folder goes."""

    group: str
    index: int
    resource: str
    instance_type: str | None
    node_id: str
    labels: dict[str, str]
    config: dict[str, Any]  # SweepConfig.to_dict()
    store: str
    run_id: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.index}"


class ProgressBoard:
    """Each node's latest progress, kept by one Ray actor (num_cpus=0) that tasks report to and the driver reads."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Any]] = {}

    def report(self, key: str, update: dict[str, Any]) -> None:
        self.state[key] = {**self.state.get(key, {}), **update}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return dict(self.state)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _attempts(mirror: Any) -> list[dict[str, Any]]:
    """Earlier attempts recorded in the stored fleet.json (a node lost mid-sweep leaves its attempt there)."""
    path = f"{mirror.remote_dir}/{FLEET_JSON}"
    try:
        with mirror.loc.fs.open_input_stream(path) as src:
            return list(json.loads(src.read().decode("utf-8")).get("attempts", []))
    except (OSError, ValueError):
        return []


def run_node(job: NodeJob, board: Any = None) -> dict[str, Any]:
    """Run (or resume) the group's sweep on this node into `job.store`/`job.run_id`; a summary dict."""
    from hwbench.measure.runner import SweepRunner
    from hwbench.measure.settings import SweepConfig
    from hwbench.results.remote import RunMirror
    from hwbench.results.uri import open_location

    os.environ.update(job.env)
    report = (lambda **u: board.report.remote(job.key, u)) if board is not None else (lambda **u: None)
    staging = Path(tempfile.mkdtemp(prefix=f"hwbench-fleet-{safe_name(job.run_id)}-"))
    local_run = staging / job.run_id
    try:
        mirror = RunMirror(open_location(job.store), job.run_id, local_run)
        resumed = mirror.pull()
        attempts = _attempts(mirror)
        attempt = {"ray_node_id": job.node_id, "labels": job.labels, "hostname": socket.gethostname(),
                   "started_at": _now(), "resumed": resumed}
        info = {"group": job.group, "index": job.index, "resource": job.resource, "instance_type": job.instance_type}
        mirror.put_json(FLEET_JSON, json.dumps({**info, "attempts": [*attempts, attempt]}, indent=2))
        report(state="starting", node_id=job.node_id, run_id=job.run_id, done=0, total=None)
        progress = {"done": 0}

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "start":
                mirror.manifest()
                progress["already"] = data["total"] - data["todo"]
                report(state="running", total=data["total"], done=progress["already"])
            elif kind == "trial_start":
                report(current=data["trial"].trial_id)
            elif kind == "trial_done":
                rec = data["record"]
                mirror.trial(safe_name(rec.trial_id) + ".parquet")
                progress["done"] += 1
                report(done=progress["already"] + progress["done"], last_status=rec.status, current=None)

        cfg = SweepConfig.from_dict(job.config)
        runner = SweepRunner(cfg, staging, on_event=on_event, resume_dir=local_run if resumed else None,
                             explicit_adapters=bool(cfg.adapters))
        if not resumed:  # the fleet's stable run id, so that a re-run finds this folder
            runner.run_id, runner.run_dir = job.run_id, local_run
        result = runner.run()
        mirror.compacted()
        mirror.manifest()
        attempt["finished_at"] = _now()
        mirror.put_json(FLEET_JSON, json.dumps({**info, "attempts": [*attempts, attempt]}, indent=2))
        counts = result.records["status"].value_counts().to_dict() if len(result.records) else {}
        report(state="done", current=None)
        return {**asdict(job), "env": sorted(job.env), "resumed": resumed, "measured_now": progress["done"],
                "records": int(len(result.records)), "statuses": {str(k): int(v) for k, v in counts.items()},
                "interrupted": result.interrupted, "notes": result.notes}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
