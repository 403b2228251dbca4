"""pkgs.k8s.io-shaped apt repositories, one per minor, filled from kubesim's .debs.

Layout as upstream: <www>/k8s/core:/stable:/v1.30/deb/ is a flat repository
(`deb [signed-by=...] <url>/core:/stable:/v1.30/deb/ /`) with Packages, Release,
InRelease, Release.gpg and Release.key (the armored public key) side by side.
Rebuilt at every `up` from `lab.kubesim.build.build_packages` (which caches its builds).
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
from pathlib import Path

from lab.config import CACHE
from lab.run import run
from lab.signing import PUBLIC_KEY, sign_release

DEBS = CACHE / "kubesim-debs"


def repo_path(root: Path, minor: str) -> Path:
    """<root>/core:/stable:/v1.30/deb for minor "v1.30"."""
    return root / "core:" / "stable:" / minor / "deb"


def build_k8s_repos(root: Path) -> dict[str, Path]:
    """Lay out and sign every minor's repository under `root`; return minor -> folder."""
    # kubesim's module, imported here: it puts its own package on sys.path at import time.
    from lab.kubesim.build import build_packages  # noqa: PLC0415

    built = build_packages(DEBS)
    staging = root.with_name(root.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    repos = {}
    for minor, debs in sorted(built.items()):
        folder = repo_path(staging, minor)
        folder.mkdir(parents=True)
        for deb in debs:
            _link_or_copy(deb, folder / deb.name)
        _index_flat(folder, minor)
        repos[minor] = repo_path(root, minor)
    # Swap in the new tree with two renames: apt in a machine never sees a missing folder
    # for longer than that.
    old = root.with_name(root.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if root.exists():
        root.rename(old)
    staging.rename(root)
    shutil.rmtree(old, ignore_errors=True)
    return repos


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no copy of the etcd binaries) when the cache and the state share a
    filesystem; a copy when not (lab.sdhost's host machine: its state is a tmpfs)."""
    try:
        os.link(source, target)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        shutil.copy2(source, target)


def _index_flat(folder: Path, minor: str) -> None:
    packages = run(["apt-ftparchive", "packages", "."], cwd=folder, timeout=300).stdout
    (folder / "Packages").write_text(packages)
    with gzip.open(folder / "Packages.gz", "wt") as gz:
        gz.write(packages)
    release = run(
        [
            "apt-ftparchive",
            "-o",
            "APT::FTPArchive::Release::Origin=obs://build.opensuse.org/isv:kubernetes:core:stable:"
            + minor,
            "-o",
            "APT::FTPArchive::Release::Label=kubeha lab (kubesim) " + minor,
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "release",
            ".",
        ],
        cwd=folder,
        timeout=120,
    ).stdout
    (folder / "Release").write_text(release)
    sign_release(folder / "Release")
    shutil.copyfile(PUBLIC_KEY, folder / "Release.key")
