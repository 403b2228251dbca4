"""
The one way the ``etcdctl`` execution module runs etcdctl: which binary, TLS files and
endpoints a call uses (kubeadm's layout unless the settings or the caller say otherwise),
the command line, and an error that quotes etcdctl.

Loaded as ``__utils__["etcdctl_cli.<function>"]``. Utils modules have no ``__salt__``:
the module passes its ``etcdctl`` settings (``config.get``) and ``cmd.run_all`` in.
"""

import shutil
from pathlib import Path

from salt.exceptions import CommandExecutionError

# kubeadm's layout: its etcd CA, and the healthcheck-client pair it creates for exactly
# this purpose; the local member's client URL.
PKI = Path("/etc/kubernetes/pki/etcd")
LOCAL_ENDPOINT = "https://127.0.0.1:2379"
DIAL_TIMEOUT = "2s"


def setting(settings, name, default=None):
    """One ``etcdctl:`` setting; unset and empty both mean the default."""
    value = (settings or {}).get(name)
    return default if value in (None, "") else value


def binary(settings) -> str:
    return setting(settings, "bin") or shutil.which("etcdctl") or "etcdctl"


def tls_files(settings, cacert=None, cert=None, key=None) -> dict:
    """{"cacert", "cert", "key"}: the caller's, else the settings', else kubeadm's."""
    return {
        "cacert": cacert or setting(settings, "cacert", str(PKI / "ca.crt")),
        "cert": cert or setting(settings, "cert", str(PKI / "healthcheck-client.crt")),
        "key": key or setting(settings, "key", str(PKI / "healthcheck-client.key")),
    }


def endpoint_list(endpoints, settings) -> list[str]:
    """A comma-separated string or a list, as a list; none given means the settings'
    endpoints, else the local member."""
    if not endpoints:
        return list(setting(settings, "endpoints", [LOCAL_ENDPOINT]))
    if isinstance(endpoints, str):
        return [e.strip() for e in endpoints.split(",") if e.strip()]
    return list(endpoints)


def command(settings, args, endpoints=None, tls=None, command_timeout="5s") -> list[str]:
    """The etcdctl argv: TLS files, endpoints and timeouts first, then ``args``."""
    files = tls_files(settings, **(tls or {}))
    return [
        binary(settings),
        f"--cacert={files['cacert']}",
        f"--cert={files['cert']}",
        f"--key={files['key']}",
        f"--endpoints={','.join(endpoint_list(endpoints, settings))}",
        f"--dial-timeout={DIAL_TIMEOUT}",
        f"--command-timeout={command_timeout}",
        *args,
    ]


def run(run_all, settings, args, endpoints=None, tls=None, *, timeout=30,
        command_timeout="5s", check=True):  # fmt: skip
    """Run etcdctl through ``run_all`` (Salt's ``cmd.run_all``); return (stdout, stderr,
    retcode). With ``check``, a failure raises with etcdctl's stderr (else its stdout)."""
    res = run_all(
        command(settings, args, endpoints, tls, command_timeout),
        python_shell=False,
        env={"ETCDCTL_API": "3"},
        timeout=timeout,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    if check and res["retcode"] != 0:
        raise CommandExecutionError(
            f"etcdctl {' '.join(args)} failed: {(res['stderr'] or res['stdout']).strip()}"
        )
    return res["stdout"], res["stderr"], res["retcode"]


def client_urls(members) -> list[str]:
    """The first client URL of every started member (an unstarted one has none): "every
    member" as the module's calls mean it."""
    urls = [u for m in members for u in m["client_urls"][:1]]
    if not urls:
        raise CommandExecutionError("etcdctl: the member list has no client URLs")
    return urls
