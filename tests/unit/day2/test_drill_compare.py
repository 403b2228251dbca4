"""The restore drill's verdict (_runners/kubeha_drill.compare): read at the snapshot's
revision every sampled value and the key count must match; once the live cluster compacted
past it, keys changed or deleted since are counted, unchanged ones must still match."""

from tests.unit.modules.khm_load import load

drill = load("_runners", "kubeha_drill")
REV = 1000


def digest(sample: dict, *, count=3, compacted=False, latest=REV) -> dict:
    return {
        "sample": sample,
        "count": None if compacted else count,
        "compacted": compacted,
        "latest_revision": latest,
        "total_keys": count + 5,
    }


def entry(mac: str, rev: int) -> dict:
    return {"hmac": mac, "mod_revision": rev}


RESTORED = digest(
    {
        "/registry/a": entry("aa", 10),
        "/registry/b": entry("bb", 20),
        "/registry/c": entry("cc", 990),
    }
)


def test_identical_at_the_snapshot_revision_passes():
    live = digest(dict(RESTORED["sample"]))
    out = drill.compare(RESTORED, live, REV)
    assert out["problems"] == [] and out["matched"] == 3


def test_a_different_value_fails_and_is_named():
    live = digest({**RESTORED["sample"], "/registry/b": entry("XX", 20)})
    out = drill.compare(RESTORED, live, REV)
    assert out["mismatched"] == ["/registry/b"]
    assert "1 sampled key(s) differ" in out["problems"][0]


def test_a_different_key_count_fails():
    out = drill.compare(RESTORED, digest(dict(RESTORED["sample"]), count=4), REV)
    assert any("holds 3 keys restored and 4 live" in p for p in out["problems"])


def test_after_compaction_changes_since_are_counted_not_judged():
    live = digest(
        {"/registry/a": entry("aa", 10), "/registry/b": entry("new", 1500), "/registry/c": None},
        compacted=True,
        latest=1600,
    )
    out = drill.compare(RESTORED, live, REV)
    assert out == {
        "matched": 1,
        "changed_since": 1,
        "deleted_since": 1,
        "mismatched": [],
        "problems": [],
    }


def test_after_compaction_an_unchanged_key_must_still_match():
    live = digest({**RESTORED["sample"], "/registry/a": entry("XX", 10)}, compacted=True)
    assert drill.compare(RESTORED, live, REV)["mismatched"] == ["/registry/a"]


def test_a_restore_at_another_revision_or_empty_fails():
    out = drill.compare(digest(RESTORED["sample"], latest=REV - 1), digest(RESTORED["sample"]), REV)
    assert any("revision 999" in p for p in out["problems"])
    empty = digest({}, count=0)
    assert any("no /registry key" in p for p in drill.compare(empty, empty, REV)["problems"])
