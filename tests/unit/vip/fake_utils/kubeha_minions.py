"""A stand-in for _utils/kubeha_minions.py in test_runner_loader.py: three keepalived nodes
kept in a JSON file (KUBEHA_FAKE_CLUSTER), answering the calls the kubeha_vip runner makes."""

import json
import os

NODES = ["cp-1", "cp-2", "cp-3"]
BASE = {"cp-1": 150, "cp-2": 140, "cp-3": 130}


def _effective(nodes, node):
    return min(254, max(1, BASE[node] + nodes[node]["priority"]))


def ask(opts, nodes, fun, *args, timeout=30, **kwargs):
    assert isinstance(opts, dict) and "cachedir" in opts, type(opts)
    path = os.environ["KUBEHA_FAKE_CLUSTER"]
    with open(path) as handle:
        cluster = json.load(handle)
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)
    cluster["calls"].append([fun, nodes, kwargs.get("release")])
    out = {}
    for node in nodes:
        x = cluster["nodes"][node]
        if fun in ("keepalived_track.apply", "keepalived_track.write"):
            entry = args[0].get(node) or {} if fun.endswith("apply") else kwargs
            for key in ("priority", "release"):
                if entry.get(key) is not None:
                    x[key] = entry[key]
            if x["release"]:
                x["holds"] = False
            if not any(n["holds"] for n in cluster["nodes"].values()):
                live = [n for n in NODES if not cluster["nodes"][n]["release"]]
                best = max(live, key=lambda n: _effective(cluster["nodes"], n))
                cluster["nodes"][best]["holds"] = True
            state = "FAULT" if x["release"] else ("MASTER" if x["holds"] else "BACKUP")
            out[node] = (True, {"new": {k: x[k] for k in ("priority", "release")},
                                "holds_vip": x["holds"], "state": state})  # fmt: skip
        elif fun == "vip_probe.holds":
            out[node] = (True, x["holds"])
        else:
            out[node] = (False, f"unexpected {fun}")
    with open(path, "w") as handle:
        json.dump(cluster, handle)
    return out


def ask_steps(opts, nodes, steps, timeout=30):
    """Salt's compound job: the steps in order on each node (here: step by step)."""
    out = {n: [] for n in nodes}
    for fun, args, kwargs in steps:
        for node, answer in ask(opts, nodes, fun, *args, timeout=timeout, **kwargs).items():
            out[node].append(answer)
    return out
