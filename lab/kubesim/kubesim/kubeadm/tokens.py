"""`kubeadm token create|list|delete` and `kubeadm certs ...` (cmd/token.go, cmd/certs.go)."""

from __future__ import annotations

import base64
import datetime as dt
import secrets

from .. import pki, tabwriter
from ..kubeclient import ApiError
from ..kubeconfig import KubeConfig
from ..versions import own_version
from . import certs, cluster
from .certs import short_human_duration
from .common import KUBE_DIR, admin_client, ca_hash, join_command, out
from .config import Config, from_cluster
from .errors import KubeadmError
from .upgrade_checks import load_cluster


def create(flags: dict, positional: list[str]) -> int:
    client = admin_client()
    token = positional[0] if positional else cluster.new_token()
    ttl = cluster.parse_ttl(flags.get("ttl", "24h0m0s"))
    usages = (flags.get("usages") or "signing,authentication").split(",")
    groups = (flags.get("groups") or cluster.DEFAULT_GROUP).split(",")
    cluster.create_token(client, token, ttl, usages, groups, flags.get("description", ""))
    if flags.get("print-join-command") not in ("true", ""):
        out(token)
        return 0

    cfg = KubeConfig.load(KUBE_DIR / "admin.conf")
    endpoint = cfg.server.replace("https://", "")
    key = flags.get("certificate-key", "")
    text = join_command(endpoint, token, ca_hash(KUBE_DIR / "pki"), bool(key), key)
    # cmd/token.go strips the template's line continuations and tabs: one line
    out(text.replace("\\\n", "").replace("\t", ""))
    return 0


def list_tokens(flags: dict) -> int:
    client = admin_client()
    items = client.list(
        "secrets", "kube-system", field_selector="type=bootstrap.kubernetes.io/token"
    )["items"]
    rows = ["TOKEN\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION\tEXTRA GROUPS"]
    for s in items:
        d = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        exp = d.get("expiration", "")
        ttl, expires = "<forever>", "<never>"
        if exp:
            when = dt.datetime.strptime(exp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            ttl = short_human_duration(when - dt.datetime.now(dt.UTC))
            expires = exp
        usages = (
            ",".join(
                sorted(
                    k.removeprefix("usage-bootstrap-")
                    for k, v in d.items()
                    if k.startswith("usage-bootstrap-") and v == "true"
                )
            )
            or "<none>"
        )
        rows.append(
            f"{d.get('token-id')}.{d.get('token-secret')}\t{ttl}\t{expires}\t{usages}\t"
            f"{d.get('description', '<none>')}\t{d.get('auth-extra-groups', '<none>')}"
        )
    print(tabwriter.render("\n".join(rows) + "\n", 10, 3), end="")
    return 0


def delete(flags: dict, positional: list[str]) -> int:
    client = admin_client()
    if not positional:
        raise KubeadmError(
            "missing argument; 'token delete' is missing token of form "
            '"^([a-z0-9]{6})$" or "^([a-z0-9]{6})\\.([a-z0-9]{16})$"'
        )
    for tok in positional:
        tid = tok.split(".")[0]
        try:
            client.delete("secrets", f"bootstrap-token-{tid}", "kube-system")
        except ApiError as err:
            raise KubeadmError(f'failed to delete bootstrap token "{tid}": {err}') from err
        out(f'bootstrap token "{tid}" deleted')
    return 0


def certificate_key(flags: dict) -> int:
    out(secrets.token_hex(32))
    return 0


def check_expiration(flags: dict) -> int:
    out("[check-expiration] Reading configuration from the cluster...")
    out(
        "[check-expiration] FYI: You can look at this config file with 'kubectl -n kube-system get cm "  # noqa: E501 - upstream's text
        "kubeadm-config -o yaml'"
    )
    print()
    print(certs.check_expiration(KUBE_DIR / "pki", KUBE_DIR, own_version()), end="")
    return 0


def _local_config() -> Config:
    """The config renew needs: from the cluster when reachable, else the local files."""
    version = own_version()

    try:
        return load_cluster(admin_client(timeout=5), version, "renew")
    except (KubeadmError, ApiError, OSError):
        out(
            "[renew] Error reading configuration from the Cluster. Falling back to default configuration"  # noqa: E501 - upstream's text
        )
        cfg = Config(
            "kubeadm.k8s.io/v1beta3", from_cluster("{}", version), init={"nodeRegistration": {}}
        )
        return cfg


def renew(flags: dict, positional: list[str]) -> int:
    if not positional:
        raise KubeadmError('missing subcommand; "renew" is not meant to be run on its own')
    what = positional[0]
    cfg = _local_config()
    print()
    names = [leaf.name for leaf in certs.LEAVES] + [n for n, _ in certs.KUBECONFIGS]
    if what != "all" and what not in names:
        raise KubeadmError(f'unknown command "{what}" for "kubeadm certs renew"')
    todo = [(n, t) for n, t in certs.KUBECONFIGS] + [
        (leaf.name, leaf.renew_text) for leaf in certs.LEAVES
    ]
    for name, text in sorted(todo):
        if what not in ("all", name):
            continue
        if name.endswith(".conf"):
            if certs.renew_kubeconfig(KUBE_DIR / name, cfg.pki_dir):
                out(f"{text} renewed")
            else:
                out(f"MISSING! {text}")
        else:
            leaf = next(x for x in certs.LEAVES if x.name == name)
            if (cfg.pki_dir / f"{leaf.base}.crt").exists():
                certs.renew_leaf(cfg, leaf)
                out(f"{text} renewed")
            else:
                out(f"MISSING! {text}")
    print()
    out(
        "Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, "
        "kube-scheduler and etcd, so that they can use the new certificates."
    )
    return 0


__all__ = ["pki"]
