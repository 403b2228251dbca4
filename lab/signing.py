"""The lab's apt signing key: one GPG key, kept in lab/.cache/gpg, trusted by the machines.

The same key signs the Debian mirror and every pkgs.k8s.io-shaped repository, as the
real pkgs.k8s.io signs all its minors with one key. gpg starts an agent for the secret
key; `stop_agent` ends it by its socket (never by name), so nothing outlives a run.
"""

from __future__ import annotations

from pathlib import Path

from lab.config import CACHE
from lab.run import LabError, run

HOME = CACHE / "gpg"
UID = "kubeha lab apt repository <apt@kubeha-lab.invalid>"
PUBLIC_KEY = HOME / "lab-apt-key.asc"


def _gpg(*args: str | Path, timeout: float = 120) -> str:
    cmd = [
        "gpg",
        "--homedir",
        HOME,
        "--batch",
        "--yes",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        *args,
    ]
    return run(cmd, timeout=timeout).stdout


def stop_agent() -> None:
    """End the gpg-agent of the lab's homedir, if one runs."""
    if HOME.exists():
        run(["gpgconf", "--homedir", HOME, "--kill", "gpg-agent"], timeout=30, check=False)


def fingerprint() -> str:
    out = _gpg("--with-colons", "--list-keys", UID)  # the public keyring: no agent needed
    for line in out.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise LabError(f"no secret key for {UID} in {HOME}")


def ensure_key() -> Path:
    """Create the key once; return the armored public key (what Release.key serves)."""
    if PUBLIC_KEY.exists():
        return PUBLIC_KEY
    HOME.mkdir(parents=True, exist_ok=True)
    HOME.chmod(0o700)
    try:
        _gpg("--quick-gen-key", UID, "rsa3072", "sign", "never", timeout=300)
        PUBLIC_KEY.write_text(_gpg("--armor", "--export", fingerprint()))
    finally:
        stop_agent()
    return PUBLIC_KEY


def sign_release(release: Path) -> None:
    """InRelease (clear-signed) and Release.gpg (detached) beside `release`."""
    key = fingerprint()
    folder = release.parent
    try:
        _gpg(
            "--local-user",
            key,
            "--clearsign",
            "--digest-algo",
            "SHA512",
            "-o",
            folder / "InRelease",
            release,
        )
        _gpg(
            "--local-user",
            key,
            "--armor",
            "--detach-sign",
            "--digest-algo",
            "SHA512",
            "-o",
            folder / "Release.gpg",
            release,
        )
    finally:
        stop_agent()
