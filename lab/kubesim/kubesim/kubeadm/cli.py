"""kubeadm's command line: subcommands, flags, exit codes (cmd/kubeadm/app/cmd)."""

from __future__ import annotations

import json
import secrets
import sys

import yaml

from .. import flags as flagutil
from ..versions import Version, coredns_tag, etcd_tag, own_version, pause_tag, version_info
from . import cluster, copycerts, init, join, reset, tokens, upgrade, upgrade_plan
from .common import admin_client, out
from .config import load
from .errors import KubeadmError
from .upgrade_checks import load_cluster

BOOLS = {
    "upload-certs",
    "control-plane",
    "discovery-token-unsafe-skip-ca-verification",
    "print-join-command",
    "skip-token-print",
    "skip-certificate-key-print",
    "force",
    "yes",
    "y",
    "f",
    "dry-run",
    "allow-experimental-upgrades",
    "allow-release-candidate-upgrades",
    "etcd-upgrade",
    "help",
    "h",
}


def version_cmd(flags: dict) -> int:
    v = own_version()
    info = version_info(v, "2024-04-17T17:34:08Z")
    fmt = flags.get("o") or flags.get("output") or ""
    if fmt == "short":
        print(v)
    elif fmt == "json":
        print(json.dumps({"clientVersion": info}, indent=2))
    elif fmt == "yaml":
        print(yaml.safe_dump({"clientVersion": info}, sort_keys=False), end="")
    elif fmt == "":
        print(
            "kubeadm version: &version.Info{"
            + ", ".join(f'{k[0].upper()}{k[1:]}:"{val}"' for k, val in info.items())
            + "}"
        )
    else:
        raise KubeadmError(f"invalid output format: {fmt}")
    return 0


def config_cmd(flags: dict, rest: list[str]) -> int:

    sub = rest[0] if rest else ""
    if sub == "validate":
        if not flags.get("config"):
            raise KubeadmError("the --config flag is mandatory")
        load(flags["config"])
        print("ok")
        return 0
    if sub == "images" and len(rest) > 1:
        v = own_version()
        if flags.get("config"):
            v = load(flags["config"]).kubernetes_version
        elif flags.get("kubernetes-version"):
            v = Version.parse(flags["kubernetes-version"])
        repo = "registry.k8s.io"
        images = [
            f"{repo}/kube-apiserver:{v}",
            f"{repo}/kube-controller-manager:{v}",
            f"{repo}/kube-scheduler:{v}",
            f"{repo}/kube-proxy:{v}",
            f"{repo}/coredns/coredns:{coredns_tag(v)}",
            f"{repo}/pause:{pause_tag(v)}",
            f"{repo}/etcd:{etcd_tag(v)}",
        ]
        for image in images:
            print(image if rest[1] == "list" else f"[config/images] Pulled {image}")
        return 0
    raise KubeadmError(f'unknown command "{sub}" for "kubeadm config"')


def dispatch(argv: list[str]) -> int:
    flags, rest = flagutil.parse(argv, BOOLS)
    if not rest:
        print(
            "Usage:\n  kubeadm [command]\n\nAvailable Commands:\n  certs\n  completion\n  config\n"
            "  help\n  init\n  join\n  kubeconfig\n  reset\n  token\n  upgrade\n  version"
        )
        return 0
    cmd, rest = rest[0], rest[1:]
    if cmd == "version":
        return version_cmd(flags)
    if cmd == "init":
        if rest[:2] == ["phase", "upload-certs"]:
            return upload_certs_phase(flags)
        if rest[:3] == ["phase", "upload-config", "kubeadm"]:
            return upload_config_phase(flags)
        if rest:
            raise KubeadmError(f'unknown command "{rest[0]}" for "kubeadm init"')
        return init.run(flags)
    if cmd == "join":
        return join.run(flags, rest)
    if cmd == "reset":
        return reset.run(flags)
    if cmd == "token":
        sub = rest[0] if rest else "list"
        if sub == "create":
            return tokens.create(flags, rest[1:])
        if sub == "list":
            return tokens.list_tokens(flags)
        if sub == "delete":
            return tokens.delete(flags, rest[1:])
        raise KubeadmError(f'unknown command "{sub}" for "kubeadm token"')
    if cmd == "certs":
        sub = rest[0] if rest else ""
        if sub == "check-expiration":
            return tokens.check_expiration(flags)
        if sub == "renew":
            return tokens.renew(flags, rest[1:])
        if sub == "certificate-key":
            return tokens.certificate_key(flags)
        raise KubeadmError(f'unknown command "{sub}" for "kubeadm certs"')
    if cmd == "upgrade":
        sub = rest[0] if rest else ""
        flags["positional"] = rest[1:]
        if sub == "plan":
            return upgrade_plan.plan(flags)
        if sub == "apply":
            return upgrade.apply(flags)
        if sub == "node":
            return upgrade.node(flags)
        raise KubeadmError(f'unknown command "{sub}" for "kubeadm upgrade"')
    if cmd == "config":
        return config_cmd(flags, rest)
    raise KubeadmError(f'unknown command "{cmd}" for "kubeadm"\nRun \'kubeadm --help\' for usage.')


def upload_certs_phase(flags: dict) -> int:

    if flags.get("upload-certs") not in ("true", ""):
        out("[upload-certs] Skipping phase. Please see --upload-certs")
        return 0
    client = admin_client()
    cfg = load_cluster(client, own_version(), "upload-certs")
    copycerts.upload_certs(client, cfg, flags.get("certificate-key") or secrets.token_hex(32), out)
    return 0


def upload_config_phase(flags: dict) -> int:
    """`kubeadm init phase upload-config kubeadm --config FILE`: the file's
    ClusterConfiguration stored in the kubeadm-config ConfigMap, which `kubeadm upgrade
    apply` reads (cmd/kubeadm/app/cmd/phases/init/uploadconfig.go: runUploadKubeadmConfig,
    uploadconfig.UploadConfiguration). How an operator changes a running cluster's
    configuration, e.g. drops an apiserver flag, before the next upgrade."""
    version = own_version()
    if not flags.get("config"):
        raise KubeadmError("upload-config kubeadm: kubeha's kubesim needs --config")
    cfg = load(flags["config"], version)
    cluster.upload_config(admin_client(), cfg, version, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return dispatch(argv)
    except KubeadmError as err:
        sys.stdout.flush()
        print(err.render(), file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
