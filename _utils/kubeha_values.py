"""
Pure value checks and parsers shared by the model's rules, the runners and the modules.

Pillar strings are untrusted input where they reach a file, a command or a script: every
check here is an anchored full match (``re.fullmatch``; ``$`` would also match before a
trailing newline) on a ``str``, never on whatever ``str()`` makes of another type.

Loaded as ``__utils__["kubeha_values.<name>"]`` by execution modules and runners; nothing
here is exposed on the command line.
"""

from __future__ import annotations

import ipaddress
import re

# What each kind of string may look like. The comment says whose rule it is.
PATTERNS = {
    # RFC 1123 label, as Kubernetes node names (validation.IsDNS1123Label).
    "dns_label": re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"),
    # RFC 1123 subdomain (validation.IsDNS1123Subdomain), max 253.
    "dns_subdomain": re.compile(
        r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    ),
    # Linux interface names (net/core/dev.c dev_valid_name: < IFNAMSIZ, no '/', ':' or
    # whitespace); kubeha keeps to the characters interface names use in practice.
    "interface": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"),
    # Kernel module names (MODULE_NAME_LEN 56; modprobe treats '-' and '_' alike).
    "kernel_module": re.compile(r"[A-Za-z0-9_-]{1,55}"),
    # sysctl keys as sysctl(8) writes them (dots or slashes between the parts).
    "sysctl_key": re.compile(r"[a-z0-9_][a-z0-9_-]*([./][A-Za-z0-9_-]+)+"),
    "sysctl_value": re.compile(r"-?[0-9]+( -?[0-9]+)*|[A-Za-z0-9_.:,/-]+"),
    # keepalived vrrp_instance names, HAProxy-free words used in config files.
    "word": re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}"),
    # Salt event tag prefixes: parts of [a-z0-9_-] joined by '/'.
    "event_prefix": re.compile(r"[a-z0-9_-]+(/[a-z0-9_-]+)*"),
    # Absolute paths without whitespace or shell/YAML specials ('..' parts: see matches).
    "path": re.compile(r"/[A-Za-z0-9._+@/-]*"),
    "file_name": re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}"),
    # http(s) URLs as apt and kubeadm take them: no whitespace, quotes or shell specials.
    "url": re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%:+@/-]*)?"),
    "https_url": re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%:+@/-]*)?"),
    # OCI image references (distribution/reference's grammar, simplified: name[:tag][@digest]).
    "image": re.compile(
        r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
        r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?"
    ),
    # Debian package names (Debian policy 5.6.1).
    "package": re.compile(r"[a-z0-9][a-z0-9+.-]+"),
    # Debian versions as pinned here (epoch:upstream-revision, no spaces).
    "package_version": re.compile(r"([0-9]+:)?[0-9][A-Za-z0-9.+~-]*"),
    "hex": re.compile(r"[a-f0-9]*"),
    # pkgs.k8s.io package revisions (the part after the '-': 1.30.0-1.1).
    "package_revision": re.compile(r"[0-9]+(\.[0-9]+)*"),
    # Flag names for kubeadm extraArgs (without the leading --).
    "flag": re.compile(r"[a-z0-9]+(-[a-z0-9]+)*"),
    # Values of flags and claims: no whitespace, quotes, backslashes or shell specials.
    "flag_value": re.compile(r"[A-Za-z0-9_.,:=/@+%-]*"),
    "claim": re.compile(r"[A-Za-z0-9_.:/@-]*"),
    # Unix socket URLs (containerd's CRI endpoint).
    "socket": re.compile(r"unix:///[A-Za-z0-9._/-]+"),
    # kubeadm preflight check names (--ignore-preflight-errors).
    "preflight": re.compile(r"[A-Za-z0-9_.-]+"),
    # keepalived's PASS secret: printable, and nothing its config parser treats specially
    # (whitespace ends a word, '#'/'!' start comments, '"' quotes, '{}' open blocks, '$'
    # expands a definition, '\\' escapes). [keepalived lib/parser.c]
    # Shell specials (;|&<>()`*?) are refused too although no shell sees the secret.
    "vrrp_secret": re.compile(r"[A-Za-z0-9%+,./:=@^_~-]{1,64}"),
    # Salt minion ids as kubeha names them (a hostname or FQDN, letters kept as given).
    "minion_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}"),
    # An API path for the probe (no query, no escapes).
    "api_path": re.compile(r"/[A-Za-z0-9/_.-]*"),
    # /readyz check names (healthz.go: names like etcd, etcd-readiness, poststarthook/x).
    "readyz_check": re.compile(r"[a-z0-9][a-z0-9/._-]{0,100}"),
    # One word of a command run without a shell: no whitespace, quotes, '$', ';', '|', '&',
    # '<>', '()' or backquotes; '{node}' is the placeholder kubeha fills in.
    "command_word": re.compile(r"[A-Za-z0-9_./:=@%+,{}-]+"),
    # Go durations as kubeadm's configs take them (time.ParseDuration: 5m0s, 90s, 1h30m).
    "go_duration": re.compile(r"([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+"),
    # Prometheus' durations (common/model/time.go ParseDuration): units y..ms, largest first,
    # each at most once, whole numbers only.
    "prom_duration": re.compile(r"(?=\d)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?"),
    # host:port as Go's net.Listen takes it (an empty host: every address).
    "listen_address": re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}"),
    # HAProxy durations (a bare number is milliseconds).
    "duration": re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?"),
    # S3 region names (us-east-1, eu-central-1; MinIO/RGW take any such word).
    "s3_region": re.compile(r"[a-z0-9][a-z0-9-]{0,31}"),
    # S3 bucket names (AWS "Bucket naming rules": 3-63 of a-z 0-9 . -, letter or digit at
    # both ends).
    "s3_bucket": re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"),
    # A key prefix: path segments of letters, digits and . _ - (no leading slash).
    "s3_prefix": re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*"),
    # Access key IDs (AWS: AKIA... of 16-128 word characters; MinIO/RGW allow a few more).
    "s3_access_key": re.compile(r"[A-Za-z0-9._-]{3,128}"),
    # Secret keys (AWS: 40 base64 characters; MinIO/RGW: 8-40+ printable). Never reaches a
    # shell or a file, but refused here with anything a shell or YAML would treat specially.
    "s3_secret": re.compile(r"[A-Za-z0-9/+=._~-]{8,128}"),
    # A KMS key id, alias or ARN.
    "kms_key": re.compile(r"[A-Za-z0-9:/_+=.@-]{1,2048}"),
    # Base64 of exactly 32 bytes (an AES-256 key, `openssl rand -base64 32`).
    "aes_key": re.compile(r"[A-Za-z0-9+/]{43}="),
}

DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# What a refusal tells the operator to use instead, per kind.
EXAMPLES = {
    "dns_label": "a lowercase DNS label like cp-1",
    "dns_subdomain": "a lowercase DNS name like api.example.com",
    "interface": "a Linux interface name like ens160 (at most 15 characters)",
    "kernel_module": "a kernel module name like br_netfilter",
    "sysctl_key": "a sysctl key like net.ipv4.ip_forward",
    "sysctl_value": "a number or a plain word",
    "word": "a word of letters, digits, '_' or '-' starting with a letter",
    "event_prefix": "an event tag prefix like kubeha/vrrp",
    "path": "an absolute path like /etc/kubernetes/kubeadm",
    "file_name": "a file name like audit.log",
    "url": "an http(s) URL like https://pkgs.k8s.io",
    "https_url": "an https:// URL",
    "image": "an image reference like registry.k8s.io/pause:3.9",
    "package": "a Debian package name like containerd",
    "package_version": "a Debian version like 1.30.0-1.1",
    "hex": "lowercase hex digits",
    "package_revision": "a pkgs.k8s.io revision like '1.1'",
    "flag": "a flag name without dashes in front, like audit-log-maxage",
    "flag_value": "a value without whitespace, quotes or shell characters",
    "claim": "a claim name or prefix like groups or oidc:",
    "socket": "a socket URL like unix:///run/containerd/containerd.sock",
    "preflight": "a preflight check name like Swap",
    "vrrp_secret": "letters, digits and %+,./:=@^_~- (keepalived uses the first 8)",
    "duration": "a duration like 500ms, 2s or 1m",
    "go_duration": "a Go duration like 5m0s or 90s",
    "prom_duration": "a Prometheus duration like 15s, 1m or 15d",
    "listen_address": "host:port like 0.0.0.0:9090",
    "minion_id": "a minion id like client or bastion.example.com",
    "api_path": "an API path like /api/v1/namespaces/default/pods",
    "readyz_check": "a /readyz check name like etcd",
    "command_word": "a command word without whitespace, quotes or shell characters ({node} "
    "is the node's name)",
    "s3_region": "a region name like us-east-1",
    "s3_bucket": "an S3 bucket name like kubeha-backups (3-63 of a-z, 0-9, '.', '-')",
    "s3_prefix": "a key prefix like kubeha or backups/etcd (no leading '/')",
    "s3_access_key": "an access key ID like AKIAIOSFODNN7EXAMPLE",
    "s3_secret": "a secret key of letters, digits and /+=._~- (8-128 characters)",
    "kms_key": "a KMS key id, alias or ARN",
    "aes_key": "base64 of 32 random bytes, from `openssl rand -base64 32`",
}


def matches(kind: str, value) -> bool:
    """Whether ``value`` is a ``str`` that fully matches the pattern of ``kind``."""
    if not isinstance(value, str) or PATTERNS[kind].fullmatch(value) is None:
        return False
    return kind != "path" or ".." not in value.split("/")


def problem(key: str, kind: str, value) -> str | None:
    """The refusal for ``kubeha:<key>`` holding ``value``, or None when it is a ``kind``."""
    if matches(kind, value):
        return None
    return f"kubeha:{key}: {value!r} is not {EXAMPLES[kind]}; fix the value in pillar."


def seconds(value) -> float:
    """HAProxy-style duration (``500ms``, ``2s``, ``1m``, a bare number = ms) in seconds."""
    text = str(value).strip()
    match = PATTERNS["duration"].fullmatch(text)
    if not match:
        raise ValueError(f"{value!r} is not a duration like 500ms, 2s or 1m")
    number, unit = match.groups()
    return float(number) * DURATION_UNITS[unit or "ms"]


GO_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_seconds(value) -> float:
    """A Go duration (``5m0s``, ``90s``, ``1h30m``: time.ParseDuration) in seconds."""
    text = str(value).strip()
    if not PATTERNS["go_duration"].fullmatch(text):
        raise ValueError(f"{value!r} is not a Go duration like 5m0s or 90s")
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)", text)
    return sum(float(number) * GO_UNITS[unit] for number, unit in parts)


def version_tuple(version) -> tuple[int, int, int]:
    """``1.30.0`` or ``v1.30.0`` as ``(1, 30, 0)``; ValueError otherwise."""
    text = str(version).strip()
    text = text[1:] if text.startswith("v") else text
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", text):
        raise ValueError(f"{version!r} is not a MAJOR.MINOR.PATCH version")
    major, minor, patch = (int(p) for p in text.split("."))
    return major, minor, patch


def ipv4(text) -> ipaddress.IPv4Address | None:
    """An IPv4 address from a ``str``, or None."""
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def control_characters(value) -> bool:
    """Whether a string holds a character below space or DEL (newline, NUL, escape...)."""
    return isinstance(value, str) and re.search(r"[\x00-\x1f\x7f]", value) is not None
