"""The lab's Debian mirror: bookworm main, only what the machines may install.

Contents: every package of the base image, everything the formula installs
(lab/debian-packages.txt), what kubesim's packages depend on
(lab/kubesim/debian-deps.txt) and what a lab host needs (scripts/system-packages/lab.txt:
lab.sdhost's systemd host machine installs it from here, as `make system-deps` would),
each with its full Depends/Recommends closure, downloaded once from the host's own Debian
mirror with apt (an empty dpkg status, so apt resolves the whole closure) and cached by
the list. Indexed with apt-ftparchive, signed with the lab key at every `up`.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

from lab.config import CACHE, DEBIAN_SUITE, LAB_DIR, REPO, STATE
from lab.hostenv import debian_mirror
from lab.run import LabError, run, step
from lab.signing import sign_release

PACKAGE_LISTS = [
    LAB_DIR / "debian-packages.txt",
    LAB_DIR / "kubesim" / "debian-deps.txt",
    REPO / "scripts" / "system-packages" / "lab.txt",
]


def wanted_packages() -> list[str]:
    names: set[str] = set()
    for path in PACKAGE_LISTS:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            name = line.split("#", 1)[0].strip()
            if name:
                names.add(name)
    return sorted(names)


def base_packages(rootfs: Path) -> list[str]:
    """name=version of every package installed in the base image."""
    out = run(
        [
            "dpkg-query",
            f"--admindir={rootfs}/var/lib/dpkg",
            "-W",
            "-f=${db:Status-Abbrev}${Package}=${Version}\n",
        ],
        timeout=60,
    ).stdout
    return sorted(line[3:] for line in out.splitlines() if line.startswith("ii "))


def ensure_debian_mirror(rootfs: Path) -> Path:
    """The mirror's root (pool/, dists/), built if the package set changed; freshly signed."""
    wanted = wanted_packages()
    installed = base_packages(rootfs)
    mirror = debian_mirror()
    key = hashlib.sha256("\n".join([mirror.uri, *wanted, *installed]).encode()).hexdigest()[:16]
    out = CACHE / "debian" / key
    if not (out / ".complete").exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with step(f"downloading the Debian mirror's packages ({len(wanted)} wanted + base)"):
            _download(tmp, wanted + [i.split("=", 1)[0] for i in installed], mirror.source_line())
        with step("indexing the Debian mirror"):
            _index(tmp)
        (tmp / ".complete").write_text("\n".join(wanted + installed) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        # Older package sets go, but not the one a running lab still serves (its
        # <state>/www/debian link): it moves to this one at that lab's next `up`.
        serving = (STATE / "www" / "debian").resolve()
        for other in (CACHE / "debian").iterdir():
            if other not in (out, serving):
                shutil.rmtree(other, ignore_errors=True)
    sign_release(out / "dists" / DEBIAN_SUITE / "Release")
    return out


def _download(root: Path, packages: list[str], source_line: str) -> None:
    work = root / ".apt"
    for d in ("state/lists/partial", "cache", "archives/partial", "parts"):
        (work / d).mkdir(parents=True, exist_ok=True)
    (work / "state/status").write_text("")  # nothing installed: apt resolves the whole closure
    (work / "sources.list").write_text(source_line + "\n")
    apt = [
        "apt-get",
        "-q",
        "-y",
        "-o",
        f"Dir::Etc::SourceList={work / 'sources.list'}",
        "-o",
        f"Dir::Etc::SourceParts={work / 'parts'}",
        "-o",
        f"Dir::State={work / 'state'}",
        "-o",
        f"Dir::State::status={work / 'state/status'}",
        "-o",
        f"Dir::Cache={work / 'cache'}",
        "-o",
        f"Dir::Cache::archives={work / 'archives'}",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Install-Recommends=true",
        "-o",
        "APT::Architecture=amd64",
        "-o",
        "APT::Architectures=amd64",
    ]
    run([*apt, "update"], timeout=600)
    run([*apt, "--download-only", "install", *packages], timeout=1800)
    pool = root / "pool" / "main"
    pool.mkdir(parents=True)
    debs = list((work / "archives").glob("*.deb"))
    if not debs:
        raise LabError("apt downloaded no packages for the lab mirror")
    for deb in debs:
        deb.rename(pool / deb.name)
    shutil.rmtree(work)


def _index(root: Path) -> None:
    binary = root / "dists" / DEBIAN_SUITE / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    packages = run(["apt-ftparchive", "packages", "pool/main"], cwd=root, timeout=600).stdout
    (binary / "Packages").write_text(packages)
    with gzip.open(binary / "Packages.gz", "wt") as gz:
        gz.write(packages)
    suite = DEBIAN_SUITE
    release = run(
        [
            "apt-ftparchive",
            "-o",
            "APT::FTPArchive::Release::Origin=kubeha-lab",
            "-o",
            "APT::FTPArchive::Release::Label=Debian (kubeha lab mirror)",
            "-o",
            f"APT::FTPArchive::Release::Suite={suite}",
            "-o",
            f"APT::FTPArchive::Release::Codename={suite}",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "release",
            f"dists/{suite}",
        ],
        cwd=root,
        timeout=120,
    ).stdout
    (root / "dists" / suite / "Release").write_text(release)
