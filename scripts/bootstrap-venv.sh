#!/usr/bin/env bash
# Create .venv with the pinned Python dependencies.
#
# pip reads the host's own index settings (pip.conf, PIP_* variables); nothing here names a
# registry. The protobuf step is separate on purpose: etcd3 0.12 fails at import with
# protobuf>=4, while salt 3008 declares an OpenTelemetry exporter that wants protobuf>=5 and
# only imports it when tracing or metrics are enabled. We install the resolver's tree first,
# then pin protobuf==3.20.3 without touching anything else.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    echo "[venv] creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi

# Some hosts list index folders that do not exist; pip warns once per package about
# them. Drop only those lines and keep pip's exit status.
pip_install() {
    "$venv/bin/pip" install --quiet "$@" 2> >(grep -v '^WARNING: Location' >&2)
}

echo "[venv] installing pinned dependencies (pyproject.toml + requirements/constraints.txt)"
pip_install -c requirements/constraints.txt -e '.[test]'
pip_install --no-deps 'protobuf==3.20.3'
# boto3 (the master's S3 client) and moto's S3 server (the lab's object store), without
# dependencies: they declare python-dateutil<3, the tree pins 4.0.0 (requirements/s3.txt).
pip_install --no-deps -r requirements/s3.txt -r requirements/s3-lab.txt

# Fail here, not in the middle of a test run, if the tree is not importable.
"$venv/bin/python" - <<'PY'
import boto3, etcd3, kubernetes, moto.server, salt.version, saltfactories  # noqa: F401
assert salt.version.__version__ == "3008.4", salt.version.__version__
print(f"[venv] ok: salt {salt.version.__version__}, etcd3 {etcd3.__version__}")
PY
touch "$venv/.kubeha-installed"
