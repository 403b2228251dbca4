"""
kubeadm-managed certificates: expiry (parsed), renewal, and the static pod restart
that makes a renewal take effect (docs/facts.md #8: components do not reload their certs).
"""

import datetime as dt
import re
import shutil

from salt.exceptions import CommandExecutionError

__virtualname__ = "kubeadm_certs"

STATIC_PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")


def __virtual__():
    if shutil.which("kubeadm"):
        return __virtualname__
    return (False, "kubeadm_certs module: the kubeadm binary is not installed")


def _kubeadm(args: list[str], timeout: float = 120) -> str:
    return __utils__["kubeadm_cli.run"](__salt__["cmd.run_all"], args, timeout=timeout)


def _table(lines: list[str], start: int) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A tabwriter table: columns start where the header's words start; (line, cells) rows."""
    header = lines[start]
    found = list(re.finditer(r"\S+(?: \S+)*", header))
    names = [m.group(0) for m in found]
    starts = [m.start() for m in found]
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append((line, cells))
    return names, rows


def _expiry(text: str) -> dt.datetime:
    # kubeadm formats NotAfter as "Jan 02, 2006 15:04 MST" (cmd/kubeadm/app/cmd/certs.go).
    return dt.datetime.strptime(text, "%b %d, %Y %H:%M UTC").replace(tzinfo=dt.UTC)


def _parse_check_expiration(stdout: str, now: dt.datetime | None = None) -> dict:
    """
    ``kubeadm certs check-expiration`` text: two tables (certificates; certificate
    authorities). Days left are computed from the expiry date, not from kubeadm's
    rounded RESIDUAL TIME column.
    """
    now = now or dt.datetime.now(dt.UTC)
    lines = stdout.splitlines()
    out: dict = {"certificates": [], "authorities": []}
    for i, line in enumerate(lines):
        if line.startswith("CERTIFICATE ") and "EXPIRES" in line:
            names, rows = _table(lines, i)
            kind = "authorities" if names[0] == "CERTIFICATE AUTHORITY" else "certificates"
            for text, cells in rows:
                if text.startswith("!MISSING! "):
                    # certs.go prints "!MISSING! <name>" for a certificate that does not
                    # exist: reported as missing, never dropped nor a crash.
                    out[kind].append({"name": text.split()[1], "missing": True})
                    continue
                row = dict(zip(names, cells, strict=False))
                expires = _expiry(row["EXPIRES"])
                out[kind].append(
                    {
                        "name": row[names[0]],
                        "expires": expires.isoformat(),
                        "days_left": round((expires - now).total_seconds() / 86400, 2),
                        "residual_time": row.get("RESIDUAL TIME", ""),
                        "ca": row.get("CERTIFICATE AUTHORITY", "")
                        if kind == "certificates"
                        else "",
                        "externally_managed": row.get("EXTERNALLY MANAGED", "no") == "yes",
                        "missing": False,
                    }
                )
    if not out["certificates"] and not out["authorities"]:
        raise CommandExecutionError("kubeadm certs check-expiration printed no table")
    return out


def check_expiration(cert_dir=None):
    """
    Expiry of every kubeadm-managed certificate and CA: name, expiry, days left, CA.

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeadm_certs.check_expiration
    """
    args = ["certs", "check-expiration"]
    if cert_dir:
        args.append(f"--cert-dir={cert_dir}")
    return _parse_check_expiration(_kubeadm(args))


def expiring(min_days=30, cert_dir=None):
    """
    Names of the certificates (not CAs) with fewer than ``min_days`` days left. A missing
    certificate is not listed: ``kubeadm certs renew`` cannot create it (check_expiration
    reports it with ``missing: True``).

    CLI Example:

    .. code-block:: bash

        salt 'cp-*' kubeadm_certs.expiring 30
    """
    certs = check_expiration(cert_dir)["certificates"]
    return [
        c["name"]
        for c in certs
        if not c["missing"] and c["days_left"] < float(min_days) and not c["externally_managed"]
    ]


def renew(names="all"):
    """
    ``kubeadm certs renew <name>`` for each name (or ``all``). Restart the static pods
    afterwards (``restart_static_pods``) or the old certificates stay in use.

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm_certs.renew all
    """
    todo = [names] if isinstance(names, str) else list(names)
    renewed = []
    for name in todo:
        # check-expiration names kubeconfigs "admin.conf"; renew wants "admin.conf" too.
        _kubeadm(["certs", "renew", name], timeout=300)
        renewed.append(name)
    return {"renewed": renewed}


def restart_static_pods(components=STATIC_PODS, timeout=180):
    """
    Restart control-plane static pods one after the other: ``crictl stop`` the
    container, then wait for the kubelet to start a new one (docs/facts.md #7).

    CLI Example:

    .. code-block:: bash

        salt 'cp-1' kubeadm_certs.restart_static_pods
    """
    names = [components] if isinstance(components, str) else list(components)
    done = []
    for name in names:
        running = [c["id"] for c in __salt__["crictl.ps"](name=name)]
        if not running:
            continue  # e.g. no local etcd on a node with external etcd
        __salt__["crictl.stop"](name)
        fresh = __salt__["crictl.wait_restarted"](name, running, timeout=timeout)
        done.append(
            {"name": name, "old": running, "new": fresh["id"], "waited_s": fresh["waited_s"]}
        )
    return done
