"""
Beacon: what one control plane sees that VRRP cannot -- a VIP holder that is alive but bad
for clients, a VIP on two nodes or on none, an apiserver that is not ready -- for the
master's ``kubeha_vip`` runner (``salt/reactor/vip.sls``), which decides and acts.

Each interval it takes one bounded sample (``vip_probe.sample``: the kernel's address table,
keepalived's state, ICMP round trips and loss to each peer, VRRP adverts heard, and in the
background ``/readyz`` of the local apiserver and through the VIP, HAProxy's backends) and
turns the numbers into states with hysteresis (a Schmitt trigger per signal): a signal turns
bad after ``fall`` bad samples in a row and good again only after ``rise`` good ones; a
sample between the two thresholds counts as neither. A path sample gone bad is confirmed at
once (the next samples taken in the same interval, within its budget), so a path turns bad
~0.3 s after the fault's first sample, not an interval later. Events, with every number of the
sample, go out only when a state changed (``salt/beacon/<minion>/kubeha_vip/change``) and
once when the beacon starts (``.../first``); nothing while all stays as it was. The numbers
alone (RTT, loss, latency) and the live priority overrides the runner writes never make an
event: the runner's own actions cannot feed back into it (Salt issues 23685, 50002, 62711).
The last report is kept in ``/run/kubeha/vip-beacon.json``, so a reload of the beacons in
the same minion process (a highstate, a pillar refresh) does not repeat an unchanged report.

The beacon never waits longer than ``probe_timeout`` (the ICMP part); HTTP and HAProxy
results arrive in the background and are counted by the sample that finds them done.

Configured by ``kubeha.lb.keepalived.heal`` on every control plane (``beacon.present``, from
``kubeha:vip_heal``)::

    beacons:
      kubeha_vip:
        - cluster: lab
        - node: cp-1
        - vip: 198.18.0.10
        - peers: {cp-2: 198.18.0.12, cp-3: 198.18.0.13}
        - vrid: 51
        - interval: 1
        - disable_during_state_run: false

(Salt beacons: https://docs.saltproject.io/en/latest/topics/beacons/)
"""

import ipaddress
import json
import os
import re
import statistics
import time
from pathlib import Path

import salt.utils.beacons

__virtualname__ = "kubeha_vip"

NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
WORD = re.compile(r"[A-Za-z0-9_-]{1,64}")
SALT_KEYS = {"interval", "disable_during_state_run", "enabled", "beacon_module", "_beacon_name"}
# option: (default, lowest, highest); None bounds are open.
NUMBERS = {
    "lb_port": (8443, 1, 65535),
    "apiserver_port": (6443, 1, 65535),
    "vrid": (None, 1, 255),
    "advert_int": (1.0, 0.01, 255),
    "down_timer_adverts": (3, 1, 100),
    "probes": (3, 1, 20),
    "probe_timeout": (0.3, 0.05, 5.0),
    "http_timeout": (2.0, 0.1, 30.0),
    "rtt_bad_ms": (100.0, 1.0, 10000.0),
    "rtt_good_ms": (50.0, 0.1, 10000.0),
    "loss_bad_pct": (20.0, 1.0, 100.0),
    "loss_good_pct": (5.0, 0.0, 99.0),
    "window": (10, 1, 100),
    "fall": (2, 1, 100),
    "rise": (5, 1, 1000),
    "first_after": (5, 1, 100),
}
WHOLE = {
    "lb_port", "apiserver_port", "vrid", "down_timer_adverts", "probes", "window", "fall",
    "rise", "first_after",
}  # fmt: skip
TEXT = {"cluster": NAME, "node": NAME, "instance": WORD}
# etcd's metrics listener, read only by vip_heal:move_etcd_leader (kubeadm's default).
URL = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._/-]*)?")
STATE_FILE = "/run/kubeha/vip-beacon.json"
CTX = "kubeha_vip.beacon"


def __virtual__():
    return __virtualname__


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(config):
    """(True, message) for a usable configuration, else (False, what is wrong)."""
    if not isinstance(config, list):
        return False, "Configuration for kubeha_vip beacon must be a list of dicts."
    cfg = salt.utils.beacons.list_to_dict(config)
    known = {*NUMBERS, *TEXT, "vip", "peers", "state_file", "etcd_metrics", *SALT_KEYS}
    if unknown := sorted(set(cfg) - known):
        return False, f"kubeha_vip beacon: unknown option(s) {unknown}"
    for key in ("cluster", "node", "vip", "peers"):
        if key not in cfg:
            return False, f"kubeha_vip beacon: {key} is required"
    for key, pattern in TEXT.items():
        if key in cfg and not (isinstance(cfg[key], str) and pattern.fullmatch(cfg[key])):
            return False, f"kubeha_vip beacon: {key} {cfg[key]!r} is not a valid name"
    try:
        ipaddress.IPv4Address(str(cfg["vip"]))
    except ValueError:
        return False, f"kubeha_vip beacon: vip {cfg['vip']!r} is not an IPv4 address"
    peers = cfg["peers"]
    if not isinstance(peers, dict) or not peers:
        return False, "kubeha_vip beacon: peers must map each other control plane to its IP"
    for name, ip in peers.items():
        if not (isinstance(name, str) and NAME.fullmatch(name)) or name == cfg["node"]:
            return False, f"kubeha_vip beacon: peer {name!r} is not another node's name"
        try:
            ipaddress.IPv4Address(str(ip))
        except ValueError:
            return False, f"kubeha_vip beacon: peer {name} address {ip!r} is not IPv4"
    for key, (_default, low, high) in NUMBERS.items():
        if key not in cfg:
            continue
        value = cfg[key]
        whole = key in WHOLE
        if not _number(value) or (whole and value != int(value)) or not low <= value <= high:
            kind = "a whole number" if whole else "a number"
            return False, f"kubeha_vip beacon: {key} must be {kind} within {low}-{high}"
    c = _config(config)
    if c["rtt_good_ms"] >= c["rtt_bad_ms"]:
        return False, "kubeha_vip beacon: rtt_good_ms must be below rtt_bad_ms (hysteresis)"
    if c["loss_good_pct"] >= c["loss_bad_pct"]:
        return False, "kubeha_vip beacon: loss_good_pct must be below loss_bad_pct (hysteresis)"
    if c["rtt_bad_ms"] >= c["probe_timeout"] * 1000:
        return False, (
            "kubeha_vip beacon: rtt_bad_ms must be below probe_timeout (a slower answer "
            "counts as lost, so a bad round trip could never be measured)"
        )
    interval = cfg.get("interval", 1)
    if not _number(interval) or c["probe_timeout"] > 0.8 * max(float(interval), 1.0):
        return False, "kubeha_vip beacon: probe_timeout must leave room in the interval (80 %)"
    metrics = cfg.get("etcd_metrics")
    if metrics and not (isinstance(metrics, str) and URL.fullmatch(metrics)):
        return False, f"kubeha_vip beacon: etcd_metrics {metrics!r} is not an http(s) URL"
    if "state_file" in cfg and not str(cfg["state_file"]).startswith("/"):
        return False, "kubeha_vip beacon: state_file must be an absolute path"
    return True, "Valid beacon configuration."


def _config(config) -> dict:
    cfg = salt.utils.beacons.list_to_dict(config)
    out = {key: cfg.get(key, default) for key, (default, _, _) in NUMBERS.items()}
    out.update({k: cfg[k] for k in ("cluster", "node", "vip", "peers") if k in cfg})
    out["instance"] = cfg.get("instance", "VI_1")
    out["state_file"] = cfg.get("state_file", STATE_FILE)
    out["interval"] = float(cfg.get("interval") or 1)
    out["etcd_metrics"] = cfg.get("etcd_metrics") or None
    return out


# --- hysteresis ---------------------------------------------------------------------------


def track(tracker: dict, sample: str, fall: int, rise: int) -> str | None:
    """One Schmitt trigger: feed a sample ("bad", "good", "neutral" or "unknown"), get the
    state. The first definite sample sets the state; then ``fall`` bad samples in a row
    make it bad and ``rise`` good ones good; a neutral sample breaks both runs."""
    if sample == "unknown":
        return tracker.get("state")
    if tracker.get("state") is None and sample in ("good", "bad"):
        tracker.update(state=sample, bad=0, good=0)
        return sample
    tracker["bad"] = tracker.get("bad", 0) + 1 if sample == "bad" else 0
    tracker["good"] = tracker.get("good", 0) + 1 if sample == "good" else 0
    if tracker["bad"] >= fall:
        tracker["state"] = "bad"
    elif tracker["good"] >= rise:
        tracker["state"] = "good"
    return tracker.get("state")


def path_sample(history: list, cfg: dict) -> tuple[str, dict]:
    """Classify the newest path sample of one peer (``history``: the last ``window``
    samples, {sent, answered, rtt_ms}) and give its numbers."""
    newest = history[-1]
    sent = sum(h["sent"] for h in history)
    lost = sent - sum(h["answered"] for h in history)
    loss = round(100.0 * lost / sent, 1) if sent else None
    rtt = round(statistics.median(newest["rtt_ms"]), 2) if newest["rtt_ms"] else None
    numbers = {"rtt_ms": rtt, "loss_pct": loss, "answered": newest["answered"],
               "sent": newest["sent"]}  # fmt: skip
    if not newest["sent"]:
        return "unknown", numbers
    if rtt is None or rtt > cfg["rtt_bad_ms"] or (loss or 0) >= cfg["loss_bad_pct"]:
        return "bad", numbers
    if rtt <= cfg["rtt_good_ms"] and (loss or 0) <= cfg["loss_good_pct"]:
        return "good", numbers
    return "neutral", numbers


def _http_sample(result, cfg: dict) -> str:
    """An answer within a quarter of ``http_timeout`` is a good sample, a slower one
    neither good nor bad (a path that is slow without failing must not flap the state),
    no answer or not 200 a bad one."""
    if not isinstance(result, dict):
        return "unknown"
    if not result.get("ok"):
        return "bad"
    return "good" if (result.get("ms") or 0) <= 250.0 * float(cfg["http_timeout"]) else "neutral"


def assess(st: dict, raw: dict, cfg: dict) -> dict:
    """Feed one sample to the triggers in ``st``; the view to report."""
    fall, rise = int(cfg["fall"]), int(cfg["rise"])
    trackers = st.setdefault("trackers", {})
    peers = {}
    for name in sorted(cfg["peers"]):
        history = st.setdefault("paths", {}).setdefault(name, [])
        history.append((raw.get("peers") or {}).get(name) or {"sent": 0, "answered": 0,
                                                               "rtt_ms": []})  # fmt: skip
        del history[: -int(cfg["window"])]
        sample, numbers = path_sample(history, cfg)
        peers[name] = {"state": track(trackers.setdefault(f"peer:{name}", {}), sample, fall,
                                      rise), **numbers}  # fmt: skip
    view = {"holds_vip": raw.get("holds_vip"), "keepalived": raw.get("keepalived"),
            "overrides": raw.get("overrides") or {}, "peers": peers}  # fmt: skip
    for key in ("apiserver", "vip"):
        result = raw.get(key)
        state = track(trackers.setdefault(key, {}), _http_sample(result, cfg), fall, rise)
        last = st.setdefault("last", {})
        if isinstance(result, dict):
            last[key] = {k: result.get(k) for k in ("code", "ms", "error")}
        view[key] = {"state": state, **last.get(key, {})}
    hap = raw.get("haproxy")
    if isinstance(hap, dict):
        st["haproxy"] = {"ok": bool(hap.get("up")), "up": hap.get("up"),
                         "total": hap.get("total"), "servers": hap.get("servers"),
                         "error": hap.get("error")}  # fmt: skip
    view["haproxy"] = st.get("haproxy") or {"ok": None}
    # A peer is heard while its adverts keep coming as VRRP expects them (the master-down
    # timer's adverts, one sample of slack): the patience keepalived has before it takes over.
    quiet = int(cfg["down_timer_adverts"]) * float(cfg["advert_int"]) + float(cfg["interval"])
    vrrp = raw.get("vrrp") or {}
    view["vrrp_from"] = sorted(n for n, h in vrrp.items()
                               if n in cfg["peers"] and h.get("age_s", quiet) < quiet)  # fmt: skip
    view["vrrp_priority"] = {n: vrrp[n].get("priority") for n in view["vrrp_from"]}
    view["errors"] = raw.get("errors") or []
    if cfg.get("etcd_metrics"):
        # read every few samples (vip_probe.ETCD_EVERY_S): the last answer stands between
        etcd = raw.get("etcd")
        if isinstance(etcd, dict):
            st["etcd_leader"] = etcd.get("leader")
        view["etcd_leader"] = st.get("etcd_leader")
    return view


def signature(view: dict) -> dict:
    """What an event is sent for: states only, never numbers or overrides (and whether
    the local etcd member leads, where vip_heal:move_etcd_leader has the beacon read it)."""
    sig = {
        "holds_vip": view.get("holds_vip"),
        "keepalived": view.get("keepalived"),
        "apiserver": (view.get("apiserver") or {}).get("state"),
        "vip": (view.get("vip") or {}).get("state"),
        "haproxy": (view.get("haproxy") or {}).get("ok"),
        "peers": {n: p.get("state") for n, p in sorted((view.get("peers") or {}).items())},
        "vrrp_from": list(view.get("vrrp_from") or []),
    }
    if "etcd_leader" in view:
        sig["etcd_leader"] = view["etcd_leader"]
    return sig


def _known(sig: dict) -> bool:
    return None not in (sig["apiserver"], sig["vip"], sig["haproxy"], *sig["peers"].values())


def report(st: dict, view: dict, cfg: dict, now: float) -> list[dict]:
    """The event to send for this view (a list of at most one)."""
    sig = signature(view)
    st["samples"] = st.get("samples", 0) + 1
    sent = st.get("sent")
    # A fresh beacon (started, or reloaded and restored) waits until every signal is known
    # (the HTTP results come in the background), at most ``first_after`` samples.
    if not _known(sig) and st["samples"] < int(cfg["first_after"]):
        return []
    if sent is None:
        reason, changed = "first", sorted(sig)
    else:
        changed = sorted(k for k in sig if sig[k] != sent.get(k))
        if not changed:
            return []
        reason = "change"
    st["sent"] = sig
    st["seq"] = st.get("seq", 0) + 1
    # Salt moves "tag" into the event's tag; "reason" stays in the data for the runner.
    event = {"tag": reason, "reason": reason, "cluster": cfg["cluster"], "node": cfg["node"],
             "seq": st["seq"], "boot": st["boot"], "at": round(now, 3), "changed": changed,
             "view": view}  # fmt: skip
    return [event]


def _restore(st: dict, path: Path) -> None:
    """A beacon reloaded in the same minion process goes on from its last report."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if saved.get("pid") == os.getpid() and isinstance(saved.get("signature"), dict):
        st.update(sent=saved["signature"], seq=saved.get("seq", 0),
                  boot=saved.get("boot", st["boot"]))  # fmt: skip
        if "etcd_leader" in saved["signature"]:
            # read in the background every few samples: until the next answer the last
            # one reported stands, or the reload alone would report a change (measured:
            # None then False, two events from a quiet cluster)
            st["etcd_leader"] = saved["signature"]["etcd_leader"]


def _save(st: dict, path: Path, event: dict) -> None:
    data = {
        "pid": os.getpid(),
        "signature": st["sent"],
        "seq": st["seq"],
        "boot": st["boot"],
        "report": {k: v for k, v in event.items() if k != "tag"},
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, default=str))
        tmp.replace(path)
    except OSError:
        pass  # a report that cannot be saved is still sent


def falling(st: dict) -> bool:
    """Whether a path's trigger is part way into a fall: bad samples in a row, not yet
    ``fall`` of them (the state not bad yet)."""
    paths = [t for key, t in (st.get("trackers") or {}).items() if key.startswith("peer:")]
    return any(t.get("bad") and t.get("state") != "bad" for t in paths)


def _sample(cfg: dict) -> dict:
    return __salt__["vip_probe.sample"](
        cfg["peers"], vip=cfg["vip"], lb_port=cfg["lb_port"],
        apiserver_port=cfg["apiserver_port"], instance=cfg["instance"], vrid=cfg["vrid"],
        probes=cfg["probes"], timeout=cfg["probe_timeout"], http_timeout=cfg["http_timeout"],
        wait=False, etcd_metrics=cfg["etcd_metrics"],
    )  # fmt: skip


def beacon(config):
    """The events above; an empty list when nothing changed."""
    cfg = _config(config)
    path = Path(cfg["state_file"])
    st = __context__.get(CTX)
    if st is None:
        st = __context__[CTX] = {"boot": f"{os.getpid()}-{int(time.time())}"}
        _restore(st, path)
        if cfg.get("etcd_metrics") and "etcd_leader" not in st:
            # the first report says who leads etcd (a local read, milliseconds), so the
            # background's first answer is not a change of its own
            st["etcd_leader"] = __salt__["vip_probe.etcd_leader"](
                cfg["etcd_metrics"], cfg["http_timeout"]
            ).get("leader")
    start = time.monotonic()
    view = assess(st, _sample(cfg), cfg)
    # A path sample gone bad is confirmed at once by the next ones (the ICMP part only
    # waits; each takes probe_timeout at most), not an interval later: the same ``fall``
    # independent bad samples, the verdict ~0.7 s sooner with the 1 s interval. An impaired
    # VIP holder's clients wait for that verdict (issue 14's p95). Within the interval's
    # budget (validate: 80 %), so the minion's loop is never held longer.
    budget = 0.8 * cfg["interval"] - cfg["probe_timeout"]
    while falling(st) and time.monotonic() - start <= budget:
        view = assess(st, _sample(cfg), cfg)
    events = report(st, view, cfg, time.time())
    if events:
        _save(st, path, events[0])
    return events
