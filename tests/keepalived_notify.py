"""The formula's kubeha-notify.sh, rendered with Salt's own Jinja, for tests that run it:
the unit tests call it directly, the root tests have real keepalived peers call it.

    script = render(tmp_path)                    # the script a node gets
    notify = wrapper(tmp_path / "node1")         # for keepalived.conf's `notify`; records
                                                 # land in tmp_path/node1/run/keepalived
"""

from __future__ import annotations

from pathlib import Path

import salt.config
import salt.utils.templates

from tests.conftest import REPO

TEMPLATE = REPO / "salt/kubeha/files/keepalived/kubeha-notify.sh.jinja"
# Valid under kubeha_rules_strings, and shaped like trouble: leading digits, double dashes,
# a prefix with several parts.
MODEL = {
    "cluster": {"name": "rm-rf--x"},
    "derived": {"node": {"name": "0-cp"}},
    "vrrp": {"notify_event_prefix": "kubeha/vrrp/x-1"},
}


def render(directory: Path, model: dict = MODEL) -> Path:
    opts = salt.config.minion_config(None)
    opts["file_client"] = "local"
    out = salt.utils.templates.render_jinja_tmpl(
        TEMPLATE.read_text(), {"opts": opts, "saltenv": "base", "kubeha": model}
    )
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "kubeha-notify.sh"
    script.write_text(out)
    script.chmod(0o755)
    return script


def wrapper(directory: Path) -> Path:
    """A notify script for a test's keepalived: the formula's script, recording under
    <directory>/run/keepalived, with no salt-call on its PATH (no event is sent)."""
    script = render(directory)
    notify = directory / "notify.sh"
    notify.write_text(
        "#!/bin/sh\n"
        f"KUBEHA_RUN_DIR={directory / 'run'} PATH=/usr/sbin:/usr/bin:/sbin:/bin "
        f'exec /bin/sh {script} "$@"\n'
    )
    notify.chmod(0o755)
    return notify
