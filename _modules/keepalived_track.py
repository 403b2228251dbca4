"""
Live VRRP priority overrides through keepalived's tracked files: no reload, no restart.

The formula declares two ``track_file`` blocks in keepalived.conf and tracks both in the
VRRP instance (keepalived.conf(5), "Track files"; keepalived ``trackers/track_file.c``):

- ``<track_dir>/<instance>.priority``, weight 1: the integer in the file is added to the
  instance's configured priority (the effective priority stays within 1-254);
- ``<track_dir>/<instance>.release``, weight 0: any non-zero value puts the instance in
  FAULT, which releases the VIP (a priority-0 advert tells the peers at once).

keepalived watches the directory with inotify (``IN_CLOSE_WRITE | IN_MOVED_TO |
IN_DELETE``) and re-reads a file when it changes, so a write here changes the running
instance within milliseconds and nothing else: a reload (SIGHUP) can flap the VIP
(docs/facts.md #15), a tracked file does not. A missing file counts as 0. The directory
must exist when keepalived starts (keepalived drops a tracked file whose directory is
missing); the formula keeps it in tmpfiles.d. Files live in /run: a reboot forgets every
override, so nothing on a node depends on the master to return to the model's priorities.

Files are replaced atomically (a temporary file renamed over the old one): keepalived
never reads half a number.

Settings (``config.get``)::

    keepalived:
      track_dir: /run/kubeha/keepalived
      notify_dir: /run/kubeha/keepalived     # the formula's notify files (state)
"""

import json
import os
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "keepalived_track"

DEFAULT_DIR = "/run/kubeha/keepalived"
KINDS = ("priority", "release")
# keepalived clamps what a weighted file adds to -254..253 and treats -254 as FAULT
# (track_file.c, process_update_vrrp_track_file_status): an offset stays inside it, and
# FAULT is asked for explicitly with `release`.
OFFSET_LIMIT = 253


def __virtual__():
    return __virtualname__


def _setting(name: str) -> str:
    return (__salt__["config.get"]("keepalived", {}) or {}).get(name) or DEFAULT_DIR


def _instance(instance) -> str:
    name = str(instance)
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise CommandExecutionError(f"instance {instance!r}: letters, digits, '_' and '-' only")
    return name


def _path(instance: str, kind: str) -> Path:
    return Path(_setting("track_dir")) / f"{_instance(instance)}.{kind}"


def _read_value(path: Path) -> int:
    # keepalived reads the number with strtol and takes 0 when the file is missing or holds
    # no number (track_file.c, process_track_file): the same rule here.
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    try:
        return int(text.split()[0], 0) if text else 0
    except ValueError:
        return 0


def _write_value(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{int(value)}\n")
        # The rename is the event keepalived acts on (IN_MOVED_TO): the file is whole by then.
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _offset(value) -> int:
    try:
        offset = int(value)
    except (TypeError, ValueError):
        raise CommandExecutionError(f"priority offset {value!r} is not a whole number") from None
    if isinstance(value, float) and value != offset:
        raise CommandExecutionError(f"priority offset {value!r} is not a whole number")
    if not -OFFSET_LIMIT <= offset <= OFFSET_LIMIT:
        raise CommandExecutionError(
            f"priority offset {offset} is outside -{OFFSET_LIMIT}..{OFFSET_LIMIT}; to release "
            "the VIP use release=1"
        )
    return offset


def _release(value) -> int:
    if value in (True, 1, "1", "true", "True"):
        return 1
    if value in (False, 0, "0", "false", "False"):
        return 0
    raise CommandExecutionError(f"release {value!r}: 1 (FAULT, the VIP is released) or 0")


def _state(instance: str) -> str | None:
    """The last VRRP state the formula's notify script recorded for the instance."""
    notify = (__salt__["config.get"]("keepalived", {}) or {}).get("notify_dir") or DEFAULT_DIR
    try:
        return json.loads((Path(notify) / f"{instance}.json").read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        return None


def read(instance="VI_1"):
    """
    The overrides in force on this node: ``priority`` (added to the configured priority)
    and ``release`` (non-zero: the instance is held in FAULT), 0 when unset.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' keepalived_track.read
    """
    return {
        "instance": _instance(instance),
        "priority": _read_value(_path(instance, "priority")),
        "release": _read_value(_path(instance, "release")),
    }


def write(priority=None, release=None, instance="VI_1", vip=None):
    """
    Change the overrides: ``priority`` is the offset added to the configured priority
    (-253..253), ``release=1`` holds the instance in FAULT (the VIP leaves this node),
    ``release=0`` lets it run again. What is not given stays. keepalived applies a change
    at once, without a reload. With ``vip``, the answer says whether this node holds it.

    CLI Example:

    .. code-block:: bash

        salt cp-2 keepalived_track.write priority=100
        salt cp-1 keepalived_track.write release=1 vip=198.18.0.10
    """
    wanted = {}
    if priority is not None:
        wanted["priority"] = _offset(priority)
    if release is not None:
        wanted["release"] = _release(release)
    old = read(instance)
    for kind, value in wanted.items():
        if old[kind] != value:
            _write_value(_path(instance, kind), value)
    new = {**old, **wanted}
    out = {
        "instance": old["instance"],
        "old": {k: old[k] for k in KINDS},
        "new": {k: new[k] for k in KINDS},
        "changed": any(old[k] != new[k] for k in KINDS),
        "state": _state(old["instance"]),
    }
    if vip:
        out["holds_vip"] = __salt__["keepalived.holds_vip"](vip)
    return out


def apply(plan, instance="VI_1", vip=None):
    """
    Apply this node's entry of a plan for the whole cluster, ``{node: {"priority": n,
    "release": 0|1}}`` keyed by minion id (one job to every control plane, each takes its
    own entry). A node without an entry changes nothing and reports its state.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' keepalived_track.apply \
            '{"cp-2": {"priority": 100}, "cp-1": {"priority": -100}}' vip=198.18.0.10
    """
    if isinstance(plan, str):
        try:
            plan = json.loads(plan)
        except ValueError:
            raise CommandExecutionError("plan must be a mapping of node to overrides") from None
    if not isinstance(plan, dict):
        raise CommandExecutionError("plan must be a mapping of node to overrides")
    mine = plan.get(__grains__.get("id")) or {}
    if not isinstance(mine, dict) or set(mine) - set(KINDS):
        raise CommandExecutionError(f"plan entry {mine!r}: only {', '.join(KINDS)}")
    return write(mine.get("priority"), mine.get("release"), instance, vip)


def clear(instance="VI_1", vip=None):
    """
    Remove every override: the configured priority counts again and the instance runs.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' keepalived_track.clear
    """
    return write(0, 0, instance, vip)
