"""
haproxy.cfg's health check in each of its three forms, rendered with Salt's own Jinja from the
model's defaults and checked with `haproxy -c` (issue 12):

- local etcd (the default): a TCP connect to the node's etcd client port, then TLS
  `GET /readyz` without etcd's own checks (`tcp-check`);
- every apiserver on every etcd member: `http-check` of `/readyz` only;
- the runbook's access layer (`kind: tcp`): a TCP connect only.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import salt.config
import salt.utils.templates
import yaml

from tests.conftest import REPO

TEMPLATE = REPO / "salt/kubeha/files/haproxy/haproxy.cfg.jinja"
CUT_TEMPLATE = REPO / "salt/kubeha/files/haproxy/kubeha-cut-down-sessions.lua.jinja"
CUT_PATH = "/etc/haproxy/kubeha-cut-down-sessions.lua"
DEFAULTS = yaml.safe_load((REPO / "salt/kubeha/parameters/defaults.yaml").read_text())["values"]


def _model(**changes) -> dict:
    model = copy.deepcopy(DEFAULTS)
    model["control_plane"] = [{"name": f"cp-{i}", "ip": f"192.168.1.1{i}"} for i in (1, 2, 3)]
    model["vip"]["address"] = "192.168.1.10"
    model["derived"] = {
        "lb_bind_address": "*",
        "haproxy_cut_after_ms": 200,
        "node": model["control_plane"][0],
    }
    for path, value in changes.items():
        section, key = path.split("__")
        target = model["haproxy"]["check"] if section == "check" else model[section]
        target[key] = value
    return model


def _jinja(template, model) -> str:
    opts = salt.config.minion_config(None)
    opts["file_client"] = "local"
    salt_funcs = {"file.file_exists": lambda path: False}
    return salt.utils.templates.render_jinja_tmpl(
        template.read_text(),
        {"opts": opts, "saltenv": "base", "kubeha": model, "salt": salt_funcs},
    )


def render_cut(tmp_path, model) -> Path:
    """The Lua task that cuts a DOWN server's sessions, rendered into ``tmp_path``."""
    lua = tmp_path / "kubeha-cut-down-sessions.lua"
    lua.write_text(_jinja(CUT_TEMPLATE, model))
    return lua


def _render(tmp_path, model) -> str:
    """haproxy.cfg, checked with `haproxy -c` (its lua-load pointed at the rendered task)."""
    text = _jinja(TEMPLATE, model)
    if shutil.which("haproxy"):
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(text.replace(CUT_PATH, str(render_cut(tmp_path, model))))
        proc = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[WARNING]" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return text


def _backend(text: str) -> str:
    rest = text.split("\nbackend kube-apiserver\n", 1)[1]
    return rest.split("\nfrontend", 1)[0].split("\nlisten", 1)[0]


def test_kubeadms_local_etcd_checks_the_member_then_readyz(tmp_path):
    backend = _backend(_render(tmp_path, _model(apiserver__etcd_servers="local")))
    steps = [line.strip() for line in backend.splitlines() if line.strip().startswith("tcp-check")]
    assert steps == [
        "tcp-check connect port 2379",
        "tcp-check connect ssl",
        'tcp-check send "GET /readyz?exclude=etcd&exclude=etcd-readiness HTTP/1.0\\r\\n'
        'Host: kube-apiserver\\r\\n\\r\\n"',
        # A graceful shutdown drains (NOLB) instead of failing (tests/root/modules/
        # test_haproxy_graceful_shutdown.py runs it in a real HAProxy).
        'tcp-check expect !string "[-]shutdown failed" error-status L7OKC',
        'tcp-check expect rstring "^HTTP/1\\.[01] 200"',
    ]
    assert "balance leastconn" in backend and "on-marked-down" not in backend
    assert "inter 200ms fastinter 100ms downinter 1s fall 2 rise 80" in backend


def test_apiservers_on_every_member_use_an_http_check_of_readyz(tmp_path):
    model = _model(apiserver__etcd_servers="all")
    backend = _backend(_render(tmp_path, model))
    assert "option httpchk" in backend and "http-check connect ssl" in backend
    assert "tcp-check connect port 2379" not in backend
    assert "uri /readyz?exclude=etcd&exclude=etcd-readiness" in backend
    assert 'http-check expect !string "[-]shutdown failed" error-status L7OKC\n' in backend


def _listen_etcd(text: str) -> str:
    return text.split("\nlisten kube-etcd\n", 1)[1].split("\n\n", 1)[0]


def test_local_first_etcd_goes_through_the_nodes_haproxy(tmp_path):
    """This node's member first, the two others as backups; the apiserver check no longer
    takes an apiserver out for its member (it is served through the backups)."""
    text = _render(tmp_path, _model(apiserver__etcd_servers="local-first"))
    listen = _listen_etcd(text).splitlines()
    assert "    bind 127.0.0.1:2382" in listen
    servers = [line.split()[1:3] for line in listen if line.startswith("    server ")]
    assert servers == [["cp-1", "192.168.1.11:2379"], ["cp-2", "192.168.1.12:2379"],
                       ["cp-3", "192.168.1.13:2379"]]  # fmt: skip
    local, *others = (line for line in listen if line.startswith("    server "))
    assert local.endswith(
        "observe layer4 error-limit 1 on-error mark-down on-marked-up shutdown-backup-sessions"
    )
    assert all(line.endswith("backup inter 1s on-marked-down shutdown-sessions") for line in others)
    default = next(line for line in listen if line.startswith("    default-server"))
    assert "check inter 200ms fastinter 100ms" in default and "ssl" not in default
    assert default.endswith("fall 2 rise 2")
    backend = _backend(text)
    assert "tcp-check connect port 2379" not in backend and "option httpchk" in backend


def test_local_first_puts_each_nodes_own_member_first(tmp_path):
    model = _model(apiserver__etcd_servers="local-first")
    model["derived"]["node"] = model["control_plane"][1]
    listen = _listen_etcd(_render(tmp_path, model))
    order = [line.split()[1] for line in listen.splitlines() if line.startswith("    server ")]
    assert order == ["cp-2", "cp-1", "cp-3"]
    assert "server cp-2 192.168.1.12:2379 observe layer4" in listen


def test_no_etcd_proxy_unless_local_first(tmp_path):
    assert "listen kube-etcd" not in _render(tmp_path, _model(apiserver__etcd_servers="local"))


def test_the_full_readyz_without_exclusions(tmp_path):
    backend = _backend(_render(tmp_path, _model(check__exclude=[], check__etcd_port=0)))
    assert "http-check send meth GET uri /readyz\n" in backend


def test_the_runbooks_tcp_check(tmp_path):
    model = _model(check__kind="tcp", check__inter="2s", check__fall=3)
    backend = _backend(_render(tmp_path, model))
    assert "option tcp-check\n    tcp-check connect\n" in backend
    assert "readyz" not in backend and "check-ssl" not in backend


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed")
def test_the_validator_is_real(tmp_path):
    text = _render(tmp_path, _model(apiserver__etcd_servers="local")).replace(
        "tcp-check connect ssl", "tcp-check conect ssl"
    )
    cfg = tmp_path / "broken.cfg"
    cfg.write_text(text)
    proc = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, check=False)
    assert proc.returncode != 0


def test_monitoring_adds_the_exporter_on_the_node_address_only(tmp_path):
    off = _render(tmp_path, _model())
    assert "frontend kubeha-metrics" not in off
    model = _model(monitoring__enabled=True, monitoring__host="client")
    model["derived"]["node"] = {"name": "cp-2", "ip": "192.168.1.12"}
    text = _render(tmp_path, model)
    metrics = text.split("\nfrontend kubeha-metrics\n", 1)[1]
    assert "bind 192.168.1.12:8405\n" in metrics
    assert "http-request use-service prometheus-exporter if { path /metrics }" in metrics
    assert "stats" not in metrics and "monitor-uri" not in metrics  # /metrics, nothing else


def test_the_frontend_binds_transparent_only_while_the_handover_is_on(tmp_path):
    # `haproxy -c` above accepts the keyword; the root test test_vip_handover.py shows what
    # it buys (an accepted connection answers from the VIP after the address moved away).
    text = _render(tmp_path, _model())
    assert "\n    bind *:8443 transparent\n" in text
    text = _render(tmp_path, _model(vip_heal__handover_s=0))
    assert "\n    bind *:8443\n" in text and "transparent" not in text.split("\nbackend")[0]


def test_a_down_servers_sessions_are_cut_by_the_lua_task_or_by_haproxy_at_once(tmp_path):
    # The task itself runs in a real HAProxy: tests/root/modules/test_haproxy_down_cut.py.
    text = _render(tmp_path, _model())
    assert f"\n    lua-load {CUT_PATH}\n" in text and "on-marked-down" not in _backend(text)
    assert "local cut_after_ms = 200\n" in render_cut(tmp_path, _model()).read_text()
    model = _model()
    model["derived"]["haproxy_cut_after_ms"] = 0
    text = _render(tmp_path, model)
    assert "lua-load" not in text
    assert _backend(text).count(" on-marked-down shutdown-sessions\n") == 1, text
