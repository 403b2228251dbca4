"""
etcd snapshots: save (online, from one member), verify, restore into a new cluster.

etcd 3.5 moved the offline commands to ``etcdutl`` (``etcdctl snapshot restore`` and
``snapshot status`` are deprecated in 3.5 and removed in 3.6); etcd 3.4 has only
``etcdctl``. Both paths exist in the field, so ``etcdutl`` is used where present and
``etcdctl`` (v3 API) otherwise. Connection settings are the ``etcdctl`` module's.

A snapshot holds every Secret of the cluster: it is written with mode 0600.

Integrity: a snapshot made through the Maintenance API (``etcdctl snapshot save``) ends with
the SHA-256 of the database before it, and its size is then 32 bytes past a multiple of 512;
``snapshot restore`` refuses a mismatch unless ``--skip-hash-check`` (etcd
server/etcdserver/api/v3rpc/maintenance.go Snapshot; etcdutl/snapshot/v3_snapshot.go
saveDB, ``hasHash := (off % 512) == sha256.Size``). ``snapshot status`` does not check it: a
flipped byte in the middle still reads, with another hash. So ``status`` checks the trailer
itself and refuses a snapshot whose trailer does not match.
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
    integrity: str


def _setting(name):
    return (__salt__["config.get"]("etcdctl", {}) or {}).get(name)


def _etcdctl_bin() -> str | None:
    return _setting("bin") or shutil.which("etcdctl")


def _etcdutl_bin(override=None) -> str | None:
    if override:
        return str(override)
    if _setting("etcdutl"):
        return _setting("etcdutl")
    ctl = _etcdctl_bin()
    if ctl and (Path(ctl).parent / "etcdutl").exists():
        return str(Path(ctl).parent / "etcdutl")
    return shutil.which("etcdutl")


def _offline(args: list[str], timeout: int = 300, etcdutl=None) -> str:
    """Run an offline snapshot command with etcdutl, or etcdctl where there is none."""
    tool = _etcdutl_bin(etcdutl)
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
        # A damaged database can make etcdutl panic (bbolt: SIGBUS, a goroutine dump):
        # the first lines say what happened.
        said = (res["stderr"] or res["stdout"]).strip().splitlines()
        raise CommandExecutionError(
            f"{Path(cmd[0]).name} {' '.join(args[:2])} failed (exit {res['retcode']}): "
            f"{' / '.join(said[:3])[:600]}"
        )
    return res["stdout"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _integrity(path: Path) -> str:
    """ "sha256" when the trailer matches, "none" when there is none; raises on a mismatch."""
    size = path.stat().st_size
    if size < 512 + 32 or size % 512 != 32:
        return "none"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        left = size - 32
        while left:
            chunk = fh.read(min(1 << 20, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        trailer = fh.read(32)
    if digest.digest() != trailer:
        raise CommandExecutionError(
            f"{path}: the snapshot's SHA-256 trailer does not match its content: corrupt"
        )
    return "sha256"


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


def status(path, etcdutl=None):
    """
    Verify a snapshot file: its SHA-256 trailer (``integrity``: ``sha256``, or ``none`` for
    a db copied from a data dir), then etcdutl reads it whole (hash, revision, keys).

    etcdutl
        The etcdutl binary to use (default: the ``etcdctl:etcdutl`` setting, next to
        etcdctl, then PATH; etcdctl 3.4 where there is none).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcd_snapshot.status /var/backups/etcd/snap.db
    """
    snap = Path(path)
    if not snap.is_file():
        raise CommandExecutionError(f"no snapshot file at {snap}")
    integrity = _integrity(snap)
    stdout = _offline(["snapshot", "status", str(snap), "-w", "json"], 120, etcdutl)
    tool = "etcdutl" if _etcdutl_bin(etcdutl) else "etcdctl"
    return asdict(
        SnapshotStatus(
            path=str(snap),
            sha256=_sha256(snap),
            checked_with=tool,
            integrity=integrity,
            **_parse_status(stdout),
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
    bump_revision=0,
    mark_compacted=False,
    etcdutl=None,
):
    """
    Restore a snapshot into a new data directory: this creates a NEW cluster.

    Run it on every member with the same ``initial_cluster`` and token, each with its
    own ``name`` and peer URL, then start etcd on the restored directories. Refuses to
    touch a data directory that already holds data.

    bump_revision / mark_compacted
        For Kubernetes (docs/facts.md #17): raise every revision by this much and mark the
        old ones compacted, so watchers re-list instead of missing events. etcdutl has the
        flags from 3.5.10 (etcd PR 16165); with an older etcdutl this raises, naming it.

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
    before = status(path, etcdutl)
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
    if int(bump_revision or 0) > 0:
        if not supports_bump_revision(etcdutl):
            raise CommandExecutionError(
                f"{_etcdutl_bin(etcdutl) or _etcdctl_bin()} has no --bump-revision (etcdutl "
                ">= 3.5.10 has it): use a newer etcdutl, or restore without bump_revision"
            )
        args.append(f"--bump-revision={int(bump_revision)}")
        if mark_compacted:
            args.append("--mark-compacted")
    _offline(args, etcdutl=etcdutl)
    target.chmod(0o700)
    return {
        "data_dir": str(target),
        "name": name,
        "initial_cluster": initial_cluster,
        "revision": before["revision"],
        "total_keys": before["total_keys"],
        "restored_with": before["checked_with"],
        "bump_revision": int(bump_revision or 0),
    }


def supports_bump_revision(etcdutl=None):
    """
    Whether the restore tool has ``--bump-revision`` / ``--mark-compacted``.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' etcd_snapshot.supports_bump_revision
    """
    tool = _etcdutl_bin(etcdutl)
    if not tool:
        return False
    res = __salt__["cmd.run_all"](
        [tool, "snapshot", "restore", "--help"],
        python_shell=False,
        timeout=30,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    return "--bump-revision" in (res["stdout"] + res["stderr"])
