"""Helpers for the module tests against real daemons: Salt loaders, PKI, processes, netns.

Everything a test starts is tracked here by PID or by name and torn down in the fixture's
finalizer, failures included. Namespaces are named ``khm-*``; addresses stay in
198.18.0.0/24 inside those namespaces, or on 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[3]


def minion_opts(tmp: Path, **extra) -> dict:
    """Minion opts that load this repo's modules the way saltutil.sync_all would."""
    import salt.config

    opts = salt.config.minion_config(None)
    tmp.mkdir(parents=True, exist_ok=True)
    # Loaders run saltutil.sync_all from file_roots; the repo root holds .venv (tens of
    # thousands of files), so serve only what sync_all reads. The full [<repo>/salt, <repo>]
    # path is covered by tests/functional/modules/test_sync_all.py on a real master.
    roots = tmp / "file_roots"
    roots.mkdir(exist_ok=True)
    for kind in ("_modules", "_states", "_utils"):
        if not (roots / kind).exists():
            (roots / kind).symlink_to(REPO / kind)
    # grains.setval writes <dirname(conf_file)>/grains: keep it in the test's tmp dir.
    (tmp / "minion").touch()
    opts.update(
        {
            "id": "khm-minion",
            "conf_file": str(tmp / "minion"),
            "file_client": "local",
            "cachedir": str(tmp / "cache"),
            "pki_dir": str(tmp / "pki"),
            "sock_dir": str(tmp / "sock"),
            "extension_modules": str(tmp / "extmods"),
            "module_dirs": [str(REPO / "_modules")],
            "states_dirs": [str(REPO / "_states")],
            "utils_dirs": [str(REPO / "_utils")],
            "file_roots": {"base": [str(roots)]},
            "grains_cache": False,
        }
    )
    opts.update(extra)
    return opts


def loaders(tmp: Path, **extra):
    from saltfactories.utils.functional import Loaders

    return Loaders(minion_opts(tmp, **extra))


# --- PKI laid out like kubeadm's /etc/kubernetes/pki/etcd ------------------------------


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _cert(subject, issuer, pub, signer, *, ca=False, sans=(), usages=(), days=365):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), True
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), False)
    if sans:
        names = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(signer, hashes.SHA256())


def _write_cert(path: Path, cert) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory: Path, cn: str = "etcd-ca", days: int = 3650):
    """A CA like kubeadm's (RSA 2048); writes ca.crt/ca.key, returns (cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _cert(_name(cn), _name(cn), key.public_key(), key, ca=True, days=days)
    _write_cert(directory / "ca.crt", cert)
    _write_key(directory / "ca.key", key)
    return cert, key


def issue(directory: Path, base: str, ca, cn, *, sans=(), server=False, client=False, org=None):
    """Issue <base>.crt/<base>.key signed by ca=(cert, key); EC keys keep it fast."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = _cert(
        _name(cn, org), ca_cert.subject, key.public_key(), ca_key, sans=sans, usages=usages
    )
    _write_cert(directory / f"{base}.crt", cert)
    _write_key(directory / f"{base}.key", key)
    return directory / f"{base}.crt", directory / f"{base}.key"


def etcd_pki(directory: Path, ips: list[str]) -> Path:
    """/etc/kubernetes/pki/etcd as kubeadm lays it out (shared SANs for the test members)."""
    ca = make_ca(directory)
    sans = ["localhost", *ips, "127.0.0.1"]
    issue(directory, "server", ca, "kube-etcd", sans=sans, server=True, client=True)
    issue(directory, "peer", ca, "kube-etcd-peer", sans=sans, server=True, client=True)
    issue(directory, "healthcheck-client", ca, "kube-etcd-healthcheck-client", client=True)
    return directory


# --- processes and ports ----------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def stop_pid(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop one process we started, by its PID (TERM, then KILL)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def start_haproxy(haproxy: str, cfg: Path, sock: Path, servers, procs: list) -> object:
    """Run HAProxy on ``cfg`` in the foreground (tracked in ``procs``, its log next to the
    config) and wait for its runtime socket ``sock`` and for ``servers`` to be UP; the
    Salt modules with ``haproxy_runtime`` pointed at that socket."""
    log = (cfg.parent / "haproxy.log").open("wb")
    procs.append(subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=log, stderr=log))
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    salt = loaders(cfg.parent / "salt", haproxy_runtime={"socket": str(sock)}).modules
    for name in servers:
        salt.haproxy_runtime.wait_for_status(name, "UP", timeout=15)
    return salt


def pid_alive(pid: int) -> bool:
    """Running and not a zombie (an exited child stays in the table until reaped)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- network namespaces -----------------------------------------------------------------


def sh(*args: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def netns_exec(ns: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, **kw)


def netns_delete(ns: str) -> None:
    """Delete one of our namespaces, killing (by PID) whatever still runs inside it."""
    res = sh("ip", "netns", "pids", ns, check=False)
    for pid in res.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    sh("ip", "netns", "delete", ns, check=False)


CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def private_netns():
    """Run the calling thread, and the threads and processes it starts meanwhile, in a new
    network namespace with only its loopback up (so a test may add iptables rules there);
    back in the original one on exit. Nothing is named or left behind: the namespace goes
    with its last process and socket."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/proc/self/task/{threading.get_native_id()}/ns/net") as old:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        try:
            sh("ip", "link", "set", "lo", "up")
            yield
        finally:
            if libc.setns(old.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's own namespace")
