"""What the host already knows: its Debian mirror and apt proxy, read at run time.

Nothing in the repository names a package registry: the lab builds from the same Debian
mirror the host's apt uses, and pip reads its own configuration (pip.conf, PIP_*).
KHA_LAB_DEBIAN_MIRROR=<uri> names the mirror instead (a host whose apt reads a local copy,
such as lab.sdhost's host machine, which reuses the cache built from the outer host's).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lab.config import DEBIAN_SUITE
from lab.run import LabError, run

MIRROR_ENV = "KHA_LAB_DEBIAN_MIRROR"
SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@dataclass(frozen=True)
class DebianMirror:
    """A Debian archive that serves `suite`/main, as configured on the host."""

    uri: str
    suite: str = DEBIAN_SUITE
    keyring: Path = DEBIAN_KEYRING

    def source_line(self) -> str:
        return f"deb [signed-by={self.keyring}] {self.uri} {self.suite} main"


def _deb822_entries(text: str) -> list[dict[str, str]]:
    entries, current = [], {}
    for raw in text.splitlines() + [""]:
        if raw.lstrip().startswith("#"):
            continue  # a comment is not a paragraph break
        line = raw.rstrip()
        if not line.strip():
            if current:
                entries.append(current)
            current = {}
            continue
        if raw[:1] in (" ", "\t") and current:
            continue  # continuation lines (embedded keys); not needed here
        key, _, value = line.partition(":")
        current[key.strip().lower()] = value.strip()
    return entries


def _one_line_entries(text: str) -> list[dict[str, str]]:
    entries = []
    for raw in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", "", raw.split("#", 1)[0]).split()
        if len(line) >= 4 and line[0] == "deb":
            entries.append(
                {
                    "types": "deb",
                    "uris": line[1],
                    "suites": line[2],
                    "components": " ".join(line[3:]),
                }
            )
    return entries


def host_sources() -> list[dict[str, str]]:
    """Every enabled apt source of the host, one dict per (deb822 or one-line) entry."""
    entries: list[dict[str, str]] = []
    for path in sorted(SOURCES_DIR.glob("*.sources")):
        entries += _deb822_entries(path.read_text())
    for path in [SOURCES_LIST, *sorted(SOURCES_DIR.glob("*.list"))]:
        if path.exists():
            entries += _one_line_entries(path.read_text())
    return [e for e in entries if e.get("enabled", "yes").lower() != "no"]


def debian_mirror(suite: str = DEBIAN_SUITE) -> DebianMirror:
    """The host's Debian mirror for `suite` main (its first matching apt source), or the one
    KHA_LAB_DEBIAN_MIRROR names. The mirror's URI is part of the lab mirror's cache key."""
    override = os.environ.get(MIRROR_ENV, "").strip()
    if override:
        return DebianMirror(override.rstrip("/"), suite)
    for entry in host_sources():
        if "deb" not in entry.get("types", "").split():
            continue
        if (
            suite in entry.get("suites", "").split()
            and "main" in entry.get("components", "").split()
        ):
            for uri in entry.get("uris", "").split():
                if uri.startswith(("http://", "https://", "file:/")):
                    return DebianMirror(uri.rstrip("/"))
    raise LabError(
        f"the host has no apt source for Debian {suite} main "
        f"(looked in {SOURCES_LIST} and {SOURCES_DIR}); the lab builds its machines from it"
    )


def apt_proxy_env() -> dict[str, str]:
    """http(s)_proxy for debootstrap, from apt's own Acquire::http(s)::Proxy, if set."""
    dump = run(["apt-config", "dump"], timeout=30).stdout
    env = {}
    for scheme in ("http", "https"):
        match = re.search(rf'^Acquire::{scheme}::Proxy "([^"]+)";', dump, re.MULTILINE)
        if match and match.group(1).upper() != "DIRECT":
            env[f"{scheme}_proxy"] = match.group(1)
    return env
