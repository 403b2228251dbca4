"""
etcd snapshots: save (online, from one member), verify, restore into a new cluster.

etcd 3.5 moved the offline commands to ``etcdutl`` (``etcdctl snapshot restore`` and
``snapshot status`` are deprecated in 3.5 and removed in 3.6); etcd 3.4 has only
``etcdctl``. Both paths exist in the field, so ``etcdutl`` is used where present and
``etcdctl`` (v3 API) otherwise. Connection settings are the ``etcdctl`` module's.

A snapshot holds every Secret of the cluster: it is written with mode 0600.
"""

# No `from __future__ import annotations`: Salt's loader execs modules outside
# sys.modules, and dataclasses then fail on string annotations (dataclasses._is_type).
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from salt.exceptions import CommandExecutionError

__virtualname__ = "etcd_snapshot"


def __virtual__():
    if _etcdctl_bin() or _etcdutl_bin():
        return __virtualname__
    return (False, "etcd_snapshot module: neither etcdutl nor etcdctl is installed")


@dataclass
class SnapshotStatus:
    path: str
    hash: int
    revision: int
    total_keys: int
    total_size: int
    sha256: str
    checked_with: str


def _setting(name):
    return (__salt__["config.get"]("etcdctl", {}) or {}).get(name)


def _etcdctl_bin() -> str | None:
    return _setting("bin") or shutil.which("etcdctl")


def _etcdutl_bin() -> str | None:
    if _setting("etcdutl"):
        return _setting("etcdutl")
    ctl = _etcdctl_bin()
    if ctl and (Path(ctl).parent / "etcdutl").exists():
        return str(Path(ctl).parent / "etcdutl")
    return shutil.which("etcdutl")


def _offline(args: list[str], timeout: int = 300) -> str:
    """Run an offline snapshot command with etcdutl, or etcdctl where there is none."""
    tool = _etcdutl_bin()
    cmd = [tool, *args] if tool else [_etcdctl_bin(), *args]
    res = __salt__["cmd.run_all"](
        cmd,
        python_shell=False,
        env={"ETCDCTL_API": "3"},
        timeout=timeout,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    if res["retcode"] != 0:
        raise CommandExecutionError(
            f"{Path(cmd[0]).name} {' '.join(args[:2])} failed: "
            f"{(res['stderr'] or res['stdout']).strip()}"
        )
    return res["stdout"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_status(stdout: str) -> dict:
    """Parse ``etcdutl snapshot status -w json`` (same shape as 3.4's etcdctl)."""
    try:
        data = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as err:
        raise CommandExecutionError(f"snapshot status: unexpected output {stdout!r}") from err
    return {
        "hash": int(data["hash"]),
        "revision": int(data["revision"]),
        "total_keys": int(data["totalKey"]),
        "total_size": int(data["totalSize"]),
    }


def status(path):
    """
    Verify a snapshot file: etcdutl reads it whole and checks its hash.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcd_snapshot.status /var/backups/etcd/snap.db
    """
    snap = Path(path)
    if not snap.is_file():
        raise CommandExecutionError(f"no snapshot file at {snap}")
    stdout = _offline(["snapshot", "status", str(snap), "-w", "json"], timeout=120)
    tool = "etcdutl" if _etcdutl_bin() else "etcdctl"
    return asdict(
        SnapshotStatus(
            path=str(snap), sha256=_sha256(snap), checked_with=tool, **_parse_status(stdout)
        )
    )


def save(path, endpoint=None, *, cacert=None, cert=None, key=None):
    """
    Save a snapshot from one member (default: the local one) and verify it.

    Written to ``<path>.part`` first and renamed once verified, mode 0600.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcd_snapshot.save /var/backups/etcd/snap.db
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = target.with_name(target.name + ".part")
    part.unlink(missing_ok=True)
    old_umask = os.umask(0o077)
    try:
        # `snapshot save` needs exactly one endpoint (etcdctl refuses several).
        __salt__["etcdctl.run"](
            ["snapshot", "save", str(part)],
            endpoints=endpoint or None,
            timeout=600,
            command_timeout="540s",
            cacert=cacert,
            cert=cert,
            key=key,
        )
    finally:
        os.umask(old_umask)
    if not part.is_file():
        raise CommandExecutionError(f"etcdctl reported success but wrote no {part}")
    part.chmod(0o600)
    verified = status(part)
    part.replace(target)
    verified["path"] = str(target)
    return verified


def restore(
    path,
    data_dir,
    name,
    initial_cluster,
    initial_advertise_peer_urls,
    *,
    initial_cluster_token="etcd-cluster",
    skip_hash_check=False,
):
    """
    Restore a snapshot into a new data directory: this creates a NEW cluster.

    Run it on every member with the same ``initial_cluster`` and token, each with its
    own ``name`` and peer URL, then start etcd on the restored directories. Refuses to
    touch a data directory that already holds data.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcd_snapshot.restore /var/backups/etcd/snap.db /var/lib/etcd cp-1 \\
            initial_cluster=cp-1=https://198.18.0.11:2380 \\
            initial_advertise_peer_urls=https://198.18.0.11:2380
    """
    target = Path(data_dir)
    if target.exists() and any(target.iterdir()):
        raise CommandExecutionError(
            f"refusing to restore into {target}: it is not empty (move it aside first)"
        )
    if target.exists():
        target.rmdir()  # etcdutl wants to create it itself
    before = status(path)
    args = [
        "snapshot",
        "restore",
        str(path),
        f"--data-dir={target}",
        f"--name={name}",
        f"--initial-cluster={initial_cluster}",
        f"--initial-cluster-token={initial_cluster_token}",
        f"--initial-advertise-peer-urls={initial_advertise_peer_urls}",
    ]
    if skip_hash_check:
        args.append("--skip-hash-check")
    _offline(args)
    target.chmod(0o700)
    return {
        "data_dir": str(target),
        "name": name,
        "initial_cluster": initial_cluster,
        "revision": before["revision"],
        "total_keys": before["total_keys"],
        "restored_with": before["checked_with"],
    }
