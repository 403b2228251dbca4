"""
The record of a rolling upgrade run (``orch/upgrade.sls``): opened by ``start``, which also
starts the chaos probe that watches the whole upgrade from the probe minion; each node's
pass appended by ``record``; the error budget checked between nodes by ``budget``; the
report written by ``report`` (``upgrade-<cluster>.{json,md,png}``: per node and step
durations, a Gantt picture, what the probe saw).

CLI Example:

.. code-block:: bash

    salt-run kubeha_upgrade_run.start lab 1.31.0
    salt-run kubeha_upgrade_run.budget lab
    salt-run kubeha_upgrade_run.report lab
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# The probe's longest run (chaos_probe.run's limit); `report` stops it when the upgrade ends.
PROBE_MAX_S = 3600


def _ask(nodes, fun: str, *args, timeout: float = 60, **kwargs) -> dict:
    return __utils__["kubeha_minions.ask"](__opts__, nodes, fun, *args, timeout=timeout, **kwargs)


def _run_dir(cluster: str) -> Path:
    path = Path(__opts__["cachedir"]) / "kubeha" / "upgrade" / cluster
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _probe_settings(model: dict) -> tuple[str, dict] | None:
    """(probe minion, probe settings) when pillar names a probe minion (chaos:probe_minion,
    the machine that is not a control plane that measures through the VIP), else None."""
    chaos = model.get("chaos") or {}
    minion = chaos.get("probe_minion")
    return (minion, {**(model.get("probe") or {}), **chaos}) if minion else None


def start(cluster: str, version=None) -> dict:
    """
    Open a new upgrade record for ``cluster`` (what ``record`` appends to and ``report``
    reads) and, when ``chaos:probe_minion`` is set, start the chaos probe there: open-loop
    requests through the VIP, a watch and a writer, for the whole upgrade.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade_run.start lab 1.31.0
    """
    model = __salt__["kubeha.model"](cluster)
    run = _run_dir(cluster)
    head = {"cluster": cluster, "target": version, "started": time.time(), "probe": None}
    probe = _probe_settings(model)
    if probe:
        minion, cfg = probe
        run_id = f"upgrade-{cluster}-{int(time.time())}"
        vip = model["vip"]
        url = f"https://{vip.get('dns_name') or vip['address']}:{vip['lb_port']}"
        jid = __utils__["kubeha_minions.start"](
            __opts__, minion, "chaos_probe.run", run_id, url, PROBE_MAX_S, rate=cfg["rate"],
            timeout=cfg["timeout"], kubeconfig=cfg["probe_kubeconfig"], path=cfg["path"],
            namespace=cfg["namespace"], write_interval=cfg["write_interval"],
            keepalive_interval=cfg["keepalive_interval"],
            lease_interval=cfg["lease_interval"], vip=vip["address"],
        )  # fmt: skip
        head["probe"] = {"minion": minion, "run_id": run_id, "jid": jid}
    (run / "steps.jsonl").write_text("")
    (run / "run.json").write_text(json.dumps(head))
    watched = f", watched by the probe on {probe[0]}" if probe else ""
    text = f"upgrade of {cluster} to {version} started{watched}"
    return {"result": True, "comment": text, **head}


def budget(cluster: str) -> dict:
    """
    The upgrade's error budget so far, from its probe: no more than
    ``upgrade:max_failed_requests`` failed requests and no stall longer than
    ``upgrade:max_stall_seconds``; a breach stops the orchestration before the next node,
    with the numbers. Passes (saying so) when the upgrade runs without a probe.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade_run.budget lab
    """
    model = __salt__["kubeha.model"](cluster)
    head = _load(cluster)
    probe = head.get("probe")
    if not probe:
        return {"result": True, "comment": "no probe (chaos:probe_minion unset): not measured"}
    ok, seen = _ask(probe["minion"], "chaos_probe.progress", probe["run_id"], timeout=30)[
        probe["minion"]
    ]
    if not ok or not seen:
        return {"result": True, "comment": f"the probe has no summary yet ({seen})"}
    limits = model["upgrade"]
    failed, stall = seen["failed"], seen["longest_stall_s"]
    words = (
        f"{seen['count']} requests so far, {failed} failed {seen['failed_by_cause']}, longest "
        f"stall {stall} s (budget: {limits['max_failed_requests']} failed, "
        f"{limits['max_stall_seconds']} s)"
    )
    if failed > limits["max_failed_requests"] or stall > limits["max_stall_seconds"]:
        text = (
            f"upgrade stopped before the next node: clients through the VIP noticed: {words}. "
            "The nodes upgraded so far serve; find what hurt them (reports/upgrade-<cluster>.md "
            "has every step's time), then run orch.upgrade again to go on."
        )
        return {"result": False, "retcode": 1, "Error": text, "comment": text, **seen}
    return {"result": True, "comment": words}


def record(outcome: dict) -> bool:
    """
    Append one node's pass (its steps, durations, outcome) to the cluster's upgrade record.
    Called by ``kubeha_upgrade_node``.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade_run.record '{"cluster": "lab", "node": "cp-2", "steps": []}'
    """
    run = _run_dir(outcome["cluster"])
    with (run / "steps.jsonl").open("a") as handle:
        handle.write(json.dumps(outcome, default=str) + "\n")
    return True


def _load(cluster: str) -> dict:
    run = _run_dir(cluster)
    head = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    steps = run / "steps.jsonl"
    lines = steps.read_text().splitlines() if steps.exists() else []
    passes = [json.loads(line) for line in lines if line.strip()]
    return {**head, "passes": passes}


def report(cluster: str, out_dir: str | None = None) -> dict:
    """
    Write ``upgrade-<cluster>.{json,md,png}``: per node and step durations (a Gantt-style
    picture), versions before and after, time in kubeadm vs in kubeha's own steps.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade_run.report lab out_dir=/srv/reports
    """
    data = _load(cluster)
    data["finished"] = time.time()
    probe = data.get("probe")
    if probe:
        _ask(probe["minion"], "chaos_probe.stop", probe["run_id"], timeout=30)
        ok, got = _ask(
            probe["minion"], "chaos_probe.fetch", probe["run_id"], wait=240, timeout=300
        )[probe["minion"]]
        if ok and isinstance(got, dict):
            stats = __utils__["chaos_analysis.request_stats"](got["requests"])
            data["probe"] = {
                **probe,
                **stats,
                "t0": got["t0"],
                "writes": got["readback"],
                # [seconds after t0 the request was due, TTFB ms or None, error or ""]
                "timeline": [[round(r[1] - got["t0"], 3), r[3], r[6]] for r in got["requests"]],
            }
        else:
            data["probe"] = {**probe, "error": str(got)}
    data["node_versions"] = __salt__["kubeha_upgrade.node_versions"](cluster)
    data["summary"] = __utils__["kubeha_upgrade_report.summary"](data)
    out = Path(out_dir or os.path.join(__opts__["cachedir"], "kubeha", "reports"))
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"upgrade-{cluster}"
    files = [base.with_suffix(".json"), base.with_suffix(".md")]
    base.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str))
    base.with_suffix(".md").write_text(__utils__["kubeha_upgrade_report.markdown"](data))
    if __utils__["kubeha_upgrade_report.gantt"](data, str(base.with_suffix(".png"))):
        files.append(base.with_suffix(".png"))
    summary = data["summary"]
    return {
        "result": True,
        "comment": (
            f"upgrade of {cluster}: {summary['nodes']} node passes in "
            f"{summary['total_seconds']:.0f} s ({summary['kubeadm_share']:.0%} in kubeadm); "
            f"report in {base}.md"
        ),
        "summary": summary,
        "files": [str(f) for f in files],
    }
