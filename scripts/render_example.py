"""
Render the formula for the example cluster (pillar/kubeha/example.sls) without a master:
for cp-1..cp-3, validate the model, render every config file into reports/render/<node>/ and
run each daemon's own validator on them when it is installed (haproxy -c, containerd config
dump). Changes nothing on this machine.

    .venv/bin/python scripts/render_example.py [--cluster example] [--out reports/render]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from lab.saltmaster import documented_config  # noqa: E402 - needs the repo on sys.path

VALIDATORS = {
    "etc/haproxy/haproxy.cfg": ["haproxy", "-c", "-q", "-f"],
    "etc/containerd/config.toml": ["containerd", "--config", "{}", "config", "dump"],
}


def salt_call(config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(REPO / ".venv/bin/salt-call"), "-c", str(config_dir), "--local", "--out=json", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def minion_config(root: Path, node: str, cluster: str) -> Path:
    conf = root / node / "etc"
    conf.mkdir(parents=True)
    settings = {
        "id": node,
        "file_client": "local",
        # What the documented master config serves (docs/examples/master.d/kubeha.conf).
        **documented_config(REPO),
        "cachedir": str(root / node / "cache"),
        "pki_dir": str(root / node / "pki"),
        "log_file": str(root / node / "minion.log"),
        "grains": {"kubeha_cluster": cluster},
    }
    (conf / "minion").write_text(json.dumps(settings))
    return conf


def validate(path: Path, command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return f"skipped ({command[0]} not installed)"
    cmd = [c.replace("{}", str(path)) for c in command]
    if "{}" not in " ".join(command):
        cmd.append(str(path))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    return "ok" if proc.returncode == 0 else f"FAILED: {proc.stderr.strip() or proc.stdout}"


def render_node(root: Path, node: str, cluster: str, out: Path) -> bool:
    started = time.monotonic()
    conf = minion_config(root, node, cluster)
    sync = salt_call(conf, "saltutil.sync_all")
    if sync.returncode != 0:
        print(f"[render] {node}: saltutil.sync_all failed:\n{sync.stderr}", file=sys.stderr)
        return False
    target = out / node
    shutil.rmtree(target, ignore_errors=True)
    ret = salt_call(
        conf, "state.apply", "kubeha.preview", f'pillar={{"kubeha_preview_dir": "{target}"}}'
    )
    if ret.returncode != 0:
        # A refused model ends here: salt-call prints the problems.
        print(f"[render] {node}: refused or failed:\n{ret.stdout}{ret.stderr}", file=sys.stderr)
        return False
    files = sorted(p for p in target.rglob("*") if p.is_file())
    print(f"[render] {node}: {len(files)} files in {target} ({time.monotonic() - started:.1f}s)")
    ok = True
    for path in files:
        rel = str(path.relative_to(target))
        verdict = validate(path, VALIDATORS[rel]) if rel in VALIDATORS else "rendered"
        ok &= not verdict.startswith("FAILED")
        print(f"[render]   /{rel}: {verdict}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cluster", default="example", help="pillar/kubeha/<cluster>.sls")
    parser.add_argument("--out", default=str(REPO / "reports/render"))
    parser.add_argument("--nodes", default="cp-1,cp-2,cp-3")
    args = parser.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="kubeha-render-") as tmp:
        results = [render_node(Path(tmp), n, args.cluster, out) for n in args.nodes.split(",")]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
