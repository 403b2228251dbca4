"""`kubeadm join`: token discovery, control-plane preparation, kubelet TLS bootstrap and the
stacked etcd member (cmd/kubeadm/app/cmd/join.go and phases/join).

Discovery (app/discovery/token): read kube-public/cluster-info without trusting the server,
check the JWS the bootstrapsigner put there for this token id, pin the CA against
--discovery-token-ca-cert-hash, then talk TLS-verified with the token. The etcd member is
added through the etcd API with the apiserver-etcd-client certificate (as a learner from
v1.29, EtcdLearnerMode) before the etcd static pod is written with
--initial-cluster-state=existing; the learner is promoted once it caught up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import yaml

from .. import kubeconfig, pki
from ..etcd import EtcdError, kubeadm_client
from ..kubeclient import ApiError, Client
from ..versions import Version, own_version
from . import certs, cluster, copycerts, files, manifests, preflight
from .common import KUBE_DIR, out, restart_kubelet, wait_kubelet
from .config import Config, from_cluster, load, normalise, parse_documents
from .errors import KubeadmError

DONE_CP = """
This node has joined the cluster and a new control plane instance was created:

* Certificate signing request was sent to apiserver and approval was received.
* The Kubelet was informed of the new secure connection details.
* Control plane label and taint were applied to the new node.
* The Kubernetes control plane instances scaled up.
* A new etcd member was added to the local/stacked etcd cluster.

To start administering your cluster from this node, you need to run the following as a regular user:

\tmkdir -p $HOME/.kube
\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config
\tsudo chown $(id -u):$(id -g) $HOME/.kube/config

Run 'kubectl get nodes' to see this node join the cluster.
"""
DONE_WORKER = """
This node has joined the cluster:
* Certificate signing request was sent to apiserver and a response was received.
* The Kubelet was informed of the new secure connection details.

Run 'kubectl get nodes' on the control-plane to see this node join the cluster.
"""


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jws(jws: str, content: str, token_id: str, secret: str) -> bool:
    header, _, sig = jws.split(".")
    payload = base64.urlsafe_b64encode(content.encode()).decode().rstrip("=")
    want = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    try:
        return (
            hmac.compare_digest(want, _b64url_decode(sig))
            and json.loads(_b64url_decode(header)).get("kid") == token_id
        )
    except ValueError:
        return False


def discover(
    endpoint: str, token: str, pins: list[str], unsafe: bool, timeout: float = 300
) -> bytes:
    """Returns the cluster CA (PEM) once cluster-info is signed for `token` and pinned."""
    if not pins and not unsafe:
        raise KubeadmError(
            'discovery.bootstrapToken: Invalid value: "": using token-based discovery '
            "without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true "
            "in your kubeadm config file or pass "
            "--discovery-token-unsafe-skip-ca-verification flag to continue"
        )
    m = cluster.TOKEN_RE.match(token)
    if not m:
        raise KubeadmError(
            f'the bootstrap token "{token}" was not of the form '
            '"^([a-z0-9]{6})\\.([a-z0-9]{16})$"'
        )
    token_id, secret = m.groups()
    insecure = Client(f"https://{endpoint}", None, insecure=True, timeout=10, keepalive=False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            cm = insecure.get("configmaps", "cluster-info", "kube-public")
            data = cm.get("data") or {}
            content = data.get("kubeconfig", "")
            jws = data.get(f"jws-kubeconfig-{token_id}")
            if not jws:
                problem = (
                    f"there is no JWS signed token in the cluster-info ConfigMap. This token id "
                    f'"{token_id}" is invalid for this cluster, can\'t connect'
                )
            elif not verify_jws(jws, content, token_id, secret):
                problem = "failed to verify JWS signature of received cluster info object, can't trust this API Server"  # noqa: E501 - upstream's text
            else:
                break
        except (ApiError, OSError) as err:
            problem = f"failed to request the cluster-info ConfigMap: {err}"
        if time.monotonic() > deadline:
            raise KubeadmError(
                f"couldn't validate the identity of the API Server: {problem}", "preflight"
            )
        out(f"[discovery] {problem}") if False else None
        time.sleep(1)
    doc = yaml.safe_load(content)
    ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    if pins:
        got = pki.ca_cert_hash(
            __import__("cryptography.x509", fromlist=["x509"]).load_pem_x509_certificate(ca)
        )
        if got not in pins:
            raise KubeadmError(
                f"cluster CA found in cluster-info ConfigMap is invalid: none of the "
                f'public keys "{got}" are pinned',
                "preflight",
            )
    return ca


# KubernetesAPICallRetryInterval and the default KubernetesAPICall timeout
# [cmd/kubeadm/app/constants/constants.go]
API_CALL_RETRY_S = 0.5
API_CALL_TIMEOUT_S = 60.0


def _etcd_endpoints_once(client: Client) -> tuple[list[str], int]:
    pods = client.list("pods", "kube-system", label_selector="component=etcd,tier=control-plane")[
        "items"
    ]
    urls = [
        (p["metadata"].get("annotations") or {}).get(
            "kubeadm.kubernetes.io/etcd.advertise-client-urls"
        )
        for p in pods
    ]
    return sorted(u for u in urls if u), len(pods)


def etcd_endpoints(
    client: Client, interval: float = API_CALL_RETRY_S, timeout: float = API_CALL_TIMEOUT_S
) -> list[str]:
    """etcdutil.getEtcdEndpoints: the advertise-client-urls annotation of each etcd pod.

    Polled like upstream: "tolerate some unexpected transient failures from the API server
    or load balancers" (a timed-out or refused list, an HTTP error) and wait for every etcd
    pod's mirror to carry its annotation, every ``interval`` until ``timeout``
    [cmd/kubeadm/app/util/etcd/etcd.go, getRawEtcdEndpointsFromPodAnnotation]. A join whose
    one list timed out behind a busy apiserver used to fail here at once.
    """
    deadline = time.monotonic() + timeout
    last = "etcd endpoints not found"
    while True:
        try:
            urls, pods = _etcd_endpoints_once(client)
            if urls and len(urls) == pods:
                return urls
            last = f"found a total of {pods} etcd pods and the following endpoints: {urls}"
        except (ApiError, OSError) as err:  # TimeoutError and ConnectionError are OSErrors
            last = str(err) or type(err).__name__
        if time.monotonic() + interval > deadline:
            raise KubeadmError(f"could not retrieve the list of etcd endpoints: {last}")
        time.sleep(interval)


def run(flags: dict, positional: list[str]) -> int:
    version = own_version()
    if flags.get("config"):
        cfg = load(flags["config"], version)
        jc = cfg.join
        if not jc:
            raise KubeadmError("no JoinConfiguration kind was found in the YAML file")
        bt = (jc.get("discovery") or {}).get("bootstrapToken") or {}
        endpoint = bt.get("apiServerEndpoint", "")
        token = bt.get("token") or (jc.get("discovery") or {}).get("tlsBootstrapToken", "")
        pins = bt.get("caCertHashes") or []
        unsafe = bool(bt.get("unsafeSkipCAVerification"))
        control_plane = jc.get("controlPlane") is not None
        key = (jc.get("controlPlane") or {}).get("certificateKey", "")
    else:
        if not positional:
            raise KubeadmError('discovery: Invalid value: "": bootstrapToken or file must be set')
        endpoint = positional[0]
        token = flags.get("token") or flags.get("discovery-token", "")
        pins = [p for p in (flags.get("discovery-token-ca-cert-hash") or "").split(",") if p]
        unsafe = flags.get("discovery-token-unsafe-skip-ca-verification") in ("true", "")
        control_plane = flags.get("control-plane") in ("true", "")
        key = flags.get("certificate-key", "")
        jdoc = {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "JoinConfiguration",
            "nodeRegistration": {"name": flags["node-name"]} if flags.get("node-name") else {},
        }
        if control_plane:
            jdoc["controlPlane"] = {
                "localAPIEndpoint": {
                    "advertiseAddress": flags.get("apiserver-advertise-address", ""),
                    "bindPort": int(flags.get("apiserver-bind-port", 6443)),
                }
            }

        cfg = parse_documents(yaml.safe_dump(jdoc), version)
    reg = cfg.node_registration
    ignored = preflight.ignored_set(
        flags.get("ignore-preflight-errors"), reg.get("ignorePreflightErrors")
    )
    out("[preflight] Running pre-flight checks")
    checks = preflight.node_checks(reg["criSocket"]) + [
        (
            "DirAvailable--etc-kubernetes-manifests",
            preflight.dir_empty(Path("/etc/kubernetes/manifests")),
            False,
        ),
        (
            "FileAvailable--etc-kubernetes-kubelet.conf",
            preflight.file_absent(KUBE_DIR / "kubelet.conf"),
            False,
        ),
        (
            "FileAvailable--etc-kubernetes-pki-ca.crt",
            preflight.file_absent(KUBE_DIR / "pki/ca.crt"),
            False,
        ),
    ]
    preflight.run(checks, ignored, out)
    ca_pem = discover(endpoint, token, pins, unsafe)
    client = Client(f"https://{endpoint}", ca_pem, token=token, timeout=10)
    out("[preflight] Reading configuration from the cluster...")
    out(
        "[preflight] FYI: You can look at this config file with 'kubectl -n kube-system get cm "
        "kubeadm-config -o yaml'"
    )
    cluster_yaml, _ = cluster.fetch_cluster_config(client)
    cfg.cluster = from_cluster(cluster_yaml, version)
    normalise(cfg, version)
    target = cfg.kubernetes_version
    kubelet_cm = client.get("configmaps", "kubelet-config", "kube-system")
    kubelet_doc = yaml.safe_load(kubelet_cm["data"]["kubelet"])
    pki_dir = cfg.pki_dir
    if control_plane:
        if not cfg.cluster.get("controlPlaneEndpoint"):
            raise KubeadmError(
                "unable to add a new control plane instance to a cluster that doesn't "
                "have a stable controlPlaneEndpoint address",
                "preflight",
            )
        out(
            "[preflight] Running pre-flight checks before initializing the new control plane instance"  # noqa: E501 - upstream's text
        )
        data_dir = Path(
            ((cfg.cluster.get("etcd") or {}).get("local") or {}).get("dataDir", "/var/lib/etcd")
        )
        preflight.run(
            preflight.control_plane_checks(target, reg["criSocket"], data_dir, cfg.bind_port),
            ignored,
            out,
        )
        out("[preflight] Pulling images required for setting up a Kubernetes cluster")
        out(
            "[preflight] This might take a minute or two, depending on the speed of your internet connection"  # noqa: E501 - upstream's text
        )
        out(
            "[preflight] You can also perform this action beforehand using 'kubeadm config images pull'"  # noqa: E501 - upstream's text
        )
        if key:
            copycerts.download_certs(client, pki_dir, key, out)
        for base in ("ca", "front-proxy-ca", "etcd/ca"):
            if not (pki_dir / f"{base}.key").exists():
                raise KubeadmError(
                    f"unable to create a new control plane instance: missing "
                    f"{pki_dir}/{base}.key; use --certificate-key or copy the CAs",
                    "control-plane-prepare/download-certs",
                )
        out(f'[certs] Using certificateDir folder "{pki_dir}"')
        certs.create_leaves(cfg, out)
        out(f'[certs] Valid certificates and keys now exist in "{pki_dir}"')
        out(certs.create_sa(pki_dir))
        out("[kubeconfig] Generating kubeconfig files")
        out(f'[kubeconfig] Using kubeconfig folder "{KUBE_DIR}"')
        files.write_kubeconfigs(cfg, target, out, init=False)
        out(f'[control-plane] Using manifest folder "{manifests.MANIFESTS}"')
        for name, pod in manifests.control_plane(cfg, target).items():
            out(f'[control-plane] Creating static Pod manifest for "{name}"')
            manifests.write(manifests.MANIFESTS, name, pod)
        out("[check-etcd] Checking that the etcd cluster is healthy")
        etcd = kubeadm_client(str(pki_dir), etcd_endpoints(client), timeout=5)
        try:
            etcd.member_list()
        except EtcdError as err:
            raise KubeadmError(f"etcd cluster is not healthy: {err}", "check-etcd") from err
    # kubelet-start
    files.write_kubelet_files(cfg, target, out, kubelet_doc)
    kubeconfig.write(
        KUBE_DIR / "bootstrap-kubelet.conf",
        kubeconfig.render(
            cfg.cluster.get("clusterName", "kubernetes"),
            f"https://{endpoint}",
            ca_pem,
            "tls-bootstrap-token-user",
            token=token,
        ),
    )
    if not (pki_dir / "ca.crt").exists():
        pki.write_public(pki_dir / "ca.crt", ca_pem)
    restart_kubelet()
    wait_kubelet()
    out("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
    deadline = time.monotonic() + 240
    while not (KUBE_DIR / "kubelet.conf").exists():
        if time.monotonic() > deadline:
            raise KubeadmError(
                "timed out waiting for the condition: the kubelet did not perform the "
                "TLS Bootstrap",
                "kubelet-start",
            )
        time.sleep(0.5)
    (KUBE_DIR / "bootstrap-kubelet.conf").unlink(missing_ok=True)
    if not control_plane:
        out(DONE_WORKER)
        return 0
    join_etcd(cfg, target, client, out)
    out(
        "The 'update-status' phase is deprecated and will be removed in a future release. Currently "  # noqa: E501 - upstream's text
        "it performs no operation"
    )
    admin = Client.from_kubeconfig(KUBE_DIR / "admin.conf", timeout=10)
    cluster.mark_control_plane(admin, cfg, out)
    out(DONE_CP)
    return 0


def _member_add(etcd, peer: str, learner: bool):
    """cmd/kubeadm/app/util/etcd/etcd.go addMember: MemberAdd (as a learner from 1.29)
    retried every EtcdAPICallRetryInterval (500 ms) until EtcdAPICallTimeout (2 min). etcd
    refuses a member while its leader has not been connected to every voting member for
    5 s ("etcdserver: unhealthy cluster", the strict reconfig check): right after the
    previous control plane joined, as a third join that follows at once meets it. An add
    whose answer was lost may have gone through: the member list is read before a retry."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return etcd.member_add([peer], learner=learner)
        except EtcdError:
            if time.monotonic() > deadline:
                raise
        try:
            members = etcd.member_list()
        except EtcdError:
            members = []
        mine = next((m for m in members if peer in m.peer_urls), None)
        if mine is not None:
            return mine, members
        time.sleep(0.5)


def join_etcd(cfg: Config, version: Version, client: Client, out) -> None:
    pki_dir = cfg.pki_dir
    etcd = kubeadm_client(str(pki_dir), etcd_endpoints(client), timeout=10)
    peer = f"https://{cfg.advertise_address}:2380"
    learner = version.minor >= 29
    members = etcd.member_list()
    mine = next((m for m in members if peer in m.peer_urls), None)
    if mine is None:
        mine, members = _member_add(etcd, peer, learner)
    initial = [(m.name, m.peer_urls[0]) for m in members if m.name and m.peer_urls]
    initial = [(n, u) for n, u in initial if u != peer] + [(cfg.node_name, peer)]
    out("[etcd] Announced new etcd member joining to the existing etcd cluster")
    out('[etcd] Creating static Pod manifest for "etcd"')
    manifests.write(
        manifests.MANIFESTS, "etcd", manifests.etcd(cfg, version, initial, existing=True)
    )
    out("[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s")
    deadline = time.monotonic() + 120
    while learner:
        try:
            etcd.member_promote(mine.id)
            break
        except EtcdError as err:
            if "not a learner" in str(err):
                break
            if time.monotonic() > deadline:
                raise KubeadmError(
                    f"error creating local etcd static pod manifest file: "
                    f"timeout waiting for etcd learner to be promoted: {err}",
                    "control-plane-join/etcd",
                ) from err
            time.sleep(1)
    local = kubeadm_client(str(pki_dir), [f"https://{cfg.advertise_address}:2379"], timeout=5)
    while True:
        try:
            local.get("/registry/health")
            return
        except EtcdError as err:
            if time.monotonic() > deadline:
                raise KubeadmError(
                    f"error waiting for etcd to join the cluster: {err}", "control-plane-join/etcd"
                ) from err
            time.sleep(1)
