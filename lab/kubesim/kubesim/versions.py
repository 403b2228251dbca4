"""Kubernetes versions kubesim packages, and what each kubeadm release pins.

The per-minor constants mirror kubeadm's `cmd/kubeadm/app/constants/constants.go`
(DefaultEtcdVersion, PauseVersion, CoreDNSVersion) for the releases the lab ships.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import total_ordering

# The patch release the lab ships for each minor (pkgs.k8s.io revision "-1.1").
RELEASES = {"1.28": "1.28.15", "1.29": "1.29.15", "1.30": "1.30.0", "1.31": "1.31.0"}
PACKAGE_REVISION = "1.1"

# kubeadm constants.go per release: the etcd image tag it writes into etcd.yaml.
ETCD_IMAGE_TAG = {"1.28": "3.5.15-0", "1.29": "3.5.15-0", "1.30": "3.5.12-0", "1.31": "3.5.15-0"}
PAUSE_TAG = {"1.28": "3.9", "1.29": "3.9", "1.30": "3.9", "1.31": "3.10"}
COREDNS_TAG = {"1.28": "v1.10.1", "1.29": "v1.11.1", "1.30": "v1.11.1", "1.31": "v1.11.3"}
# cri-tools and kubernetes-cni as each pkgs.k8s.io minor repository carries them.
CRI_TOOLS = {"1.28": "1.28.0", "1.29": "1.29.0", "1.30": "1.30.0", "1.31": "1.31.1"}
KUBERNETES_CNI = {"1.28": "1.2.0", "1.29": "1.3.0", "1.30": "1.4.0", "1.31": "1.5.1"}

# v1beta4 of the kubeadm config API appeared in kubeadm v1.31 (kubeadm v1beta4/doc.go).
V1BETA4_SINCE = (1, 31)

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")


@total_ordering
@dataclass(frozen=True)
class Version:
    """A Kubernetes semantic version (v1.30.0)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.match(text.strip())
        if not match:
            raise ValueError(f'could not parse "{text}" as version')
        return cls(*(int(g) for g in match.groups()))

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"

    @property
    def bare(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def minor_key(self) -> str:
        return f"{self.major}.{self.minor}"

    def __lt__(self, other: Version) -> bool:
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)


_OWN: Version | None = None


def set_own_version(text: str) -> None:
    """Called by the /usr/bin launcher a package installs: the version it was built as."""
    global _OWN
    _OWN = Version.parse(text)


def own_version() -> Version:
    """The version this program was packaged as (the launcher's, else $KUBESIM_VERSION)."""
    if _OWN is not None:
        return _OWN
    return Version.parse(os.environ.get("KUBESIM_VERSION", "v1.30.0"))


def etcd_tag(version: Version) -> str:
    return ETCD_IMAGE_TAG.get(version.minor_key, ETCD_IMAGE_TAG["1.31"])


def pause_tag(version: Version) -> str:
    return PAUSE_TAG.get(version.minor_key, "3.9")


def coredns_tag(version: Version) -> str:
    return COREDNS_TAG.get(version.minor_key, "v1.11.1")


GIT_COMMIT = {
    "1.28.15": "841856557ef0f6a399096c42635d114d6f2cf7f4",
    "1.29.15": "0d0f172cdf9fd42d6feee3467374b58d3e168df0",
    "1.30.0": "7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a",
    "1.31.0": "9edcffcde5595e8a5b1a35f88c421764e575afce",
}


def git_commit(version: Version) -> str:
    return GIT_COMMIT.get(version.bare, "0" * 40)


def version_info(version: Version, build_date: str) -> dict:
    """k8s.io/apimachinery/pkg/version.Info as each binary reports it (`version -o json`,
    the apiserver's /version); only the build date differs between the binaries."""
    return {
        "major": str(version.major),
        "minor": str(version.minor),
        "gitVersion": str(version),
        "gitCommit": git_commit(version),
        "gitTreeState": "clean",
        "buildDate": build_date,
        "goVersion": "go1.22.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
