"""
The one way kubeha runs kubeadm, and what may be shown of its output.

``kubeadm init`` prints a bootstrap token and, with ``--upload-certs``, the certificate
key that decrypts the ``kubeadm-certs`` Secret; ``token create`` prints a token; join
configs hold both. So every kubeadm call goes through :py:func:`run`: an argument list (no
shell), a timeout, output kept out of the minion log when it may hold a secret, and errors
raised with :py:func:`redact`-ed text.

Used by the kubeadm, kubeadm_join, kubeadm_certs and kubeadm_upgrade modules as
``__utils__["kubeadm_cli.run"](__salt__["cmd.run_all"], [...], timeout=...)``.
"""

from __future__ import annotations

import re

from salt.exceptions import CommandExecutionError

TOKEN_RE = re.compile(r"\b([a-z0-9]{6})\.[a-z0-9]{16}\b")
CERT_KEY_RE = re.compile(r"(--certificate-key[ =]|certificate key:\s*)([a-f0-9]{64})")
# A bare 64-hex word is a certificate key ("Using certificate key:\n<key>"); CA pins are
# sha256:<hex> and public.
BARE_KEY_RE = re.compile(r"(?<!sha256:)\b[a-f0-9]{64}\b")


def redact(text) -> str:
    """Bootstrap tokens' secret half and certificate keys replaced by ``<redacted>``."""
    text = TOKEN_RE.sub(lambda m: f"{m.group(1)}.<redacted>", text or "")
    text = CERT_KEY_RE.sub(lambda m: f"{m.group(1)}<redacted>", text)
    return BARE_KEY_RE.sub("<redacted>", text)


def run(run_all, args: list[str], *, timeout: float, secret: bool = False) -> str:
    """
    ``kubeadm <args>`` through Salt's ``cmd.run_all`` (``run_all``); its stdout, or
    CommandExecutionError naming the subcommand with kubeadm's redacted complaint.

    ``secret=True`` keeps the command's output out of the minion log (it may print or
    read a token or a certificate key); the return value is the caller's to redact.
    """
    res = run_all(
        ["kubeadm", *args],
        python_shell=False,
        timeout=timeout,
        ignore_retcode=True,
        output_loglevel="quiet" if secret else "debug",
    )
    if res["retcode"] != 0:
        what = " ".join(a for a in args[:3] if not a.startswith("-"))
        err = redact((res["stderr"] or res["stdout"]).strip())
        if "Timed out after" in err:  # cmd.run_all's report of a killed command
            err = f"did not finish within {timeout:g} s and was killed"
        raise CommandExecutionError(f"kubeadm {what} failed: {err}")
    return res["stdout"]


def parse_join_commands(stdout: str) -> dict:
    """
    Join parameters from ``kubeadm init`` / ``token create --print-join-command`` output.

    The command is rendered by kubeadm's joinCommandTemplate
    (cmd/kubeadm/app/cmd/util/join.go): ``kubeadm join HOST:PORT --token T \\`` then
    ``--discovery-token-ca-cert-hash sha256:H`` and, for control planes,
    ``--control-plane --certificate-key K``, continued over lines with backslashes.
    """
    flat = re.sub(r"[ \t]*\\[ \t]*\n\s*", " ", stdout)
    joins = re.findall(r"kubeadm join (\S+) --token (\S+)((?: --?[\w-]+(?: [^\s-]\S*)?)*)", flat)
    if not joins:
        raise CommandExecutionError("no `kubeadm join` command in kubeadm's output")
    out: dict = {"endpoint": joins[0][0], "token": joins[0][1], "ca_cert_hashes": []}
    for _, _, rest in joins:
        out["ca_cert_hashes"] += [
            h
            for h in re.findall(r"--discovery-token-ca-cert-hash (\S+)", rest)
            if h not in out["ca_cert_hashes"]
        ]
        if m := re.search(r"--certificate-key ([a-f0-9]{64})", rest):
            out["certificate_key"] = m.group(1)
    return out
