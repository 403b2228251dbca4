"""The machines' base image: Debian 12 minimal + systemd + a pinned Salt minion.

Built once per recipe and cached as one file, lab/.cache/base/<hash>.squashfs; `up`
loop-mounts it read-only at /run/kha-lab/base and every machine boots an overlay over it.
(One file, not a tree: Salt masters serving file_roots [<repo>] walk the repository.)
The recipe hash covers this file, the package list and the wheel pins, so editing any of
them rebuilds the base on the next `up`.

Salt goes where Salt's onedir packages put it: /opt/saltstack/salt (a venv of the base's
own python3.11, filled from wheels built on the host), with /usr/bin/salt-minion,
/usr/bin/salt-call and /usr/bin/salt-pip, and the upstream salt-minion.service unit.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from lab import wheels
from lab.config import BASE_MOUNT, CACHE
from lab.hostenv import apt_proxy_env, debian_mirror
from lab.run import LabError, run, say, step

# What every machine has before Salt touches it: what an Ubuntu/Debian server install has.
BASE_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "iproute2",
    "iputils-ping",
    "netbase",
    "python3",
    "python3-venv",
    "ca-certificates",
    "gnupg",
    "curl",
    "procps",
    "kmod",
    "less",
]

# Upstream's unit (salt/pkg/common/salt-minion.service), as the onedir .deb installs it.
MINION_UNIT = """\
[Unit]
Description=The Salt Minion
Documentation=man:salt-minion(1) file:///usr/share/doc/salt/html/contents.html https://docs.saltproject.io/en/latest/contents.html
After=network.target salt-master.service

[Service]
KillMode=process
Type=notify
NotifyAccess=all
LimitNOFILE=8192
ExecStart=/usr/bin/salt-minion

[Install]
WantedBy=multi-user.target
"""

CUSTOMIZE = """\
set -eu
python3 -m venv /opt/saltstack/salt
pip="/opt/saltstack/salt/bin/pip install --quiet --no-index --find-links /wheels"
$pip -c /wheels/constraints.txt -r /wheels/requirements.txt
$pip --no-deps protobuf==3.20.3
/opt/saltstack/salt/bin/python -c 'import salt.version, etcd3, kubernetes' # importable, or fail
for tool in salt-minion salt-call; do ln -sf /opt/saltstack/salt/bin/$tool /usr/bin/$tool; done
printf '#!/bin/sh\\n# Like the onedir salt-pip: install into the minion'"'"'s own Python.\\n\
exec /opt/saltstack/salt/bin/pip "$@"\\n' > /usr/bin/salt-pip
chmod 755 /usr/bin/salt-pip
mkdir -p /etc/salt/minion.d /etc/salt/pki/minion /var/log/salt /var/cache/salt
systemctl enable salt-minion.service
# Periodic apt runs would take the dpkg lock in the middle of a test's state.apply.
systemctl mask apt-daily.timer apt-daily-upgrade.timer
"""


def recipe() -> str:
    """Everything that decides the base image's content."""
    return "\n".join(
        [
            Path(__file__).read_text(),
            " ".join(BASE_PACKAGES),
            wheels.recipe(),
        ]
    )


def recipe_hash() -> str:
    return hashlib.sha256(recipe().encode()).hexdigest()[:16]


def image_path() -> Path:
    return CACHE / "base" / f"{recipe_hash()}.squashfs"


def ensure_base() -> Path:
    """The cached base image (a squashfs file), built first if its recipe changed."""
    image = image_path()
    if image.exists():
        return image
    wheelhouse = wheels.wheelhouse()
    build = image.with_suffix(".build")
    _remove_tree(build)
    build.mkdir(parents=True)
    rootfs = build / "rootfs"
    mirror = debian_mirror()
    with step(f"debootstrap Debian {mirror.suite} (minbase) from {mirror.uri}"):
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                f"--keyring={mirror.keyring}",
                mirror.suite,
                rootfs,
                mirror.uri,
            ],
            timeout=1800,
            env=apt_proxy_env(),
        )
    with step("installing the pinned Salt minion into /opt/saltstack/salt"):
        _customize(rootfs, wheelhouse)
    _tidy(rootfs)
    with step("packing the base image (squashfs, lz4)"):
        partial = image.with_suffix(".partial")
        _pack(rootfs, partial)
        partial.rename(image)
    shutil.rmtree(build)
    _prune_old_bases(keep=image)
    return image


def _pack(rootfs: Path, partial: Path) -> None:
    """mksquashfs, once more single-threaded if it hangs: squashfs-tools 4.5.1 (Debian 12)
    was seen here stuck for good with every thread in a futex wait and nothing written
    (upstream has open reports of such hangs, plougher/squashfs-tools#326). The packing
    takes well under a minute when it works."""
    argv = ["mksquashfs", rootfs, partial, "-noappend", "-comp", "lz4", "-quiet", "-no-progress"]
    try:
        run(argv, timeout=300)
    except LabError as err:
        say(f"mksquashfs failed or hung ({str(err)[:200]}); packing again with one processor")
        run([*argv, "-processors", "1"], timeout=900)


def mount_base(image: Path) -> Path:
    """Loop-mount the image read-only at /run/kha-lab/base (idempotent); the overlays' lower."""
    if is_mounted(BASE_MOUNT):
        if mounted_image() == image.resolve():
            return BASE_MOUNT
        raise LabError(f"{BASE_MOUNT} holds another base image; run `python -m lab down` first")
    BASE_MOUNT.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "squashfs", "-o", "loop,ro", image, BASE_MOUNT], timeout=60)
    return BASE_MOUNT


def mounted_image() -> Path | None:
    """The image file behind /run/kha-lab/base, from the loop device's backing file."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(BASE_MOUNT):
            device = fields[fields.index("-") + 2]
            backing = Path("/sys/block") / Path(device).name / "loop" / "backing_file"
            return Path(backing.read_text().strip()) if backing.exists() else None
    return None


def is_mounted(path: Path) -> bool:
    points = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    return str(path) in points


def _customize(rootfs: Path, wheelhouse: Path) -> None:
    unit = rootfs / "lib/systemd/system/salt-minion.service"
    unit.write_text(MINION_UNIT)
    shutil.copyfile(wheels.CONSTRAINTS, wheelhouse / "constraints.txt")
    run(
        [
            "systemd-nspawn",
            "-q",
            "--register=no",
            "--keep-unit",
            "-D",
            rootfs,
            f"--bind-ro={wheelhouse}:/wheels",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "/bin/sh",
            "-c",
            CUSTOMIZE,
        ],
        timeout=1200,
    )


def _tidy(rootfs: Path) -> None:
    """Leave a base every machine can share: no host apt source, no identity, no caches."""
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / leftover).glob("*"):
            if item.is_file():
                item.unlink()
    (rootfs / "etc/machine-id").write_text("")  # each machine gets its own at first boot
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (rootfs / "etc/hostname").write_text("localhost\n")


def _remove_tree(path: Path) -> None:
    if path.exists():
        prefix = str(path.resolve()) + "/"
        points = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
        busy = [p for p in points if p.startswith(prefix)]
        if busy:
            raise LabError(f"{busy[0]} is still mounted under {path}; unmount it first")
        shutil.rmtree(path)


def _prune_old_bases(keep: Path) -> None:
    """Older recipes' images are dead weight (hundreds of MB each); keep the current one."""
    current = mounted_image()
    for other in (CACHE / "base").iterdir():
        if other in (keep, current):
            continue
        if other.is_dir():
            _remove_tree(other)
        else:
            other.unlink()
