"""The day-2 keys of the model (backup:, drill:, defrag:, certs:): numbers and relations
refused with the key and the fix, secrets never repeated in a refusal, and redacted."""

import copy

import pytest

SECRET = "Sup3rSecretValue/with+chars="


def test_defaults_pass(salt_funcs, example):
    assert salt_funcs["kubeha_model.check"](example) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"backup": {"s3": {"multipart_chunk_mb": 4}}}, "kubeha:backup:s3:multipart_chunk_mb"),
        (
            {"backup": {"s3": {"multipart_chunk_mb": 100, "multipart_threshold_mb": 64}}},
            "exceeds multipart_threshold_mb",
        ),
        ({"backup": {"s3": {"access_key": "AKIAEXAMPLE"}}}, "set both"),
        ({"backup": {"s3": {"kms_key_id": "alias/x"}}}, "only used with"),
        ({"backup": {"s3": {"checksum": "MD5"}}}, "kubeha:backup:s3:checksum"),
        ({"backup": {"s3": {"sse": "aes"}}}, "kubeha:backup:s3:sse"),
        ({"backup": {"s3": {"bucket": "Bad_Bucket"}}}, "kubeha:backup:s3:bucket"),
        ({"backup": {"keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0}}, "keep at least"),
        ({"backup": {"keep_daily": 1.5}}, "not a whole number"),
        ({"drill": {"client_port": 2379}}, "live etcd's own port"),
        ({"drill": {"client_port": 23800, "peer_port": 23800}}, "must differ"),
        ({"certs": {"renew_before_days": 366}}, "kubeha:certs:renew_before_days: 366 is outside"),
        ({"defrag": {"fragmented_mb": 0}}, "kubeha:defrag:fragmented_mb"),
        ({"defrag": {"metrics_url": "ftp://x"}}, "kubeha:defrag:metrics_url"),
    ],
)
def test_refusals_name_the_key(salt_funcs, example, model_with, change, expected):
    problems = salt_funcs["kubeha_model.check"](model_with(example, change))
    assert any(expected in p for p in problems), problems


def test_a_worker_is_no_drill_host(salt_funcs, example, model_with):
    model = model_with(
        example, {"workers": [{"name": "w-1", "ip": "192.168.1.21"}], "drill": {"host": "w-1"}}
    )
    assert any(
        "kubeha:drill:host: w-1 is a worker" in p for p in salt_funcs["kubeha_model.check"](model)
    )


@pytest.mark.parametrize(
    "path", [("backup", "s3", "secret_key"), ("backup", "s3", "access_key"), ("backup", "pki_key")]
)
@pytest.mark.parametrize("bad", ["{s}\n", "{s}';touch /tmp/x;'", "{s} $(id)"])
def test_a_refused_secret_is_never_repeated(salt_funcs, example, path, bad):
    model = copy.deepcopy(example)
    model["backup"]["s3"].update(access_key="AKIAEXAMPLE", secret_key="x" * 40)
    parent = model
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = bad.format(s=SECRET)
    problems = salt_funcs["kubeha_model.check"](model)
    name = "kubeha:" + ":".join(path)
    assert any(p.startswith(name) for p in problems), problems
    assert not any(SECRET in p for p in problems), problems


def test_secrets_are_redacted(salt_funcs, example):
    model = copy.deepcopy(example)
    model["backup"]["s3"].update(access_key="AKIAEXAMPLE", secret_key=SECRET)
    model["backup"]["pki_key"] = "A" * 43 + "="
    shown = salt_funcs["kubeha_model.redact"](model)
    assert shown["backup"]["s3"]["secret_key"] == "<redacted>"
    assert shown["backup"]["s3"]["access_key"] == "<redacted>"
    assert shown["backup"]["pki_key"] == "<redacted>"
    assert SECRET not in str(shown)
