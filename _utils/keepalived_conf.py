"""
keepalived.conf editing for the ``keepalived`` execution module: find a
``vrrp_instance`` block, read or change its ``priority`` line, and stage a new config
next to the live one for validation.

The config holds the VRRP password: the staged copy is created 0600 (``os.open`` with a
mode, no umask games) and takes the live file's mode only once validated.
"""

import contextlib
import os
import re
from pathlib import Path

from salt.exceptions import CommandExecutionError

PRIORITY_RE = re.compile(r"^(\s*priority\s+)(\d+)(.*)$", re.M)
STAGED_SUFFIX = ".kubeha-new"


def instance_block(text, instance, where="the config"):
    """Character span (start, end) of ``vrrp_instance <instance> { ... }``."""
    match = re.search(rf"^\s*vrrp_instance\s+{re.escape(instance)}\s*\{{", text, re.M)
    if not match:
        raise CommandExecutionError(f"no vrrp_instance {instance} in {where}")
    depth, pos = 1, match.end()
    while depth and pos < len(text):
        depth += {"{": 1, "}": -1}.get(text[pos], 0)
        pos += 1
    return match.start(), pos


def priority(text, instance, where="the config"):
    """The instance's ``priority`` (None when the line is absent)."""
    start, end = instance_block(text, instance, where)
    match = PRIORITY_RE.search(text, start, end)
    return int(match.group(2)) if match else None


def with_priority(text, instance, value, where="the config"):
    """text with the instance's priority set to value; None when it already is."""
    start, end = instance_block(text, instance, where)
    match = PRIORITY_RE.search(text, start, end)
    if match is None:
        raise CommandExecutionError(f"vrrp_instance {instance} in {where} has no priority line")
    if int(match.group(2)) == int(value):
        return None
    return text[: match.start(2)] + str(int(value)) + text[match.end(2) :]


def stage(live, text, validate):
    """
    Write text to ``<live>.kubeha-new`` (0600 from creation), call validate(path) (raise
    to reject), give it the live file's mode and owner; return the staged path. The caller
    renames it over the live file. Nothing is left behind on failure.
    """
    live = Path(live)
    st = live.stat()
    tmp = live.with_name(live.name + STAGED_SUFFIX)
    tmp.unlink(missing_ok=True)  # a crash's leftover: O_EXCL below must create afresh
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            with contextlib.suppress(PermissionError):  # not root: the copy stays ours
                os.fchown(fh.fileno(), st.st_uid, st.st_gid)
        validate(str(tmp))
        tmp.chmod(st.st_mode & 0o777)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
