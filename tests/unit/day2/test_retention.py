"""Retention of backup sets (_utils/kubeha_retention.py): restic's keep-hourly/daily/weekly
counting over simulated weeks of hourly backups, and the newest verified set always kept."""

import datetime as dt

import pytest

from tests.unit.modules.khm_load import load

retention = load("_utils", "kubeha_retention")
NOW = dt.datetime(2026, 3, 18, 12, 30, tzinfo=dt.UTC)  # a Wednesday


def hourly_sets(hours: int, verified=lambda when: True) -> list[dict]:
    """One set at :07 of every hour for `hours` hours before NOW."""
    out = []
    for h in range(hours):
        when = NOW.replace(minute=7) - dt.timedelta(hours=h)
        out.append({"stamp": retention.format_stamp(when), "verified": verified(when)})
    return out


def kept_times(plan) -> list[dt.datetime]:
    return [retention.parse_stamp(s) for s in plan["keep"]]


def test_three_weeks_of_hourly_backups_keep_24_hourly_7_daily_4_weekly():
    sets = hourly_sets(24 * 21)
    plan = retention.plan(sets, hourly=24, daily=7, weekly=4, now=NOW)
    kept = kept_times(plan)
    # The 24 newest hours, one each.
    newest = sorted(kept, reverse=True)[:24]
    assert newest == [NOW.replace(minute=7) - dt.timedelta(hours=h) for h in range(24)]
    # Daily: the newest set of each of the 7 newest days (Mar 18 is in the hourly ones);
    # weekly: the newest of ISO weeks 12, 11, 10, 9 (Mar 18, 15, 8 and 1; 21 days back
    # reach Feb 25).
    at = lambda d, h: dt.datetime(2026, 3, d, h, 7, tzinfo=dt.UTC)  # noqa: E731
    daily = {at(d, 23) for d in range(12, 18)}
    weekly = {at(15, 23), at(8, 23), at(1, 23)}
    assert set(kept) == set(newest) | daily | weekly
    assert len(kept) == 24 + 5 + 2  # Mar 17 23:07 is one of the 24 hourly ones
    assert plan["newest_verified"] == retention.format_stamp(NOW.replace(minute=7))
    assert len(plan["keep"]) + len(plan["delete"]) == len(sets)
    assert set(plan["keep"]).isdisjoint(plan["delete"])


def test_counts_are_exact_when_rules_do_not_overlap():
    # 30 days, one backup per day at 01:07: hourly keeps the 24 newest days' sets (each its
    # own hour), daily 7 of those, weekly 4 weeks: the union is 24 + whatever weekly adds.
    sets = [
        {
            "stamp": retention.format_stamp(NOW.replace(hour=1, minute=7) - dt.timedelta(days=d)),
            "verified": True,
        }
        for d in range(30)
    ]
    plan = retention.plan(sets, hourly=24, daily=7, weekly=4, now=NOW)
    assert len(plan["keep"]) == 24 + sum(
        1
        for s in plan["keep"]
        if "weekly" in " ".join(plan["why"][s]) and all("hourly" not in w for w in plan["why"][s])
    )
    assert len(plan["delete"]) == 30 - len(plan["keep"])


def test_newest_verified_survives_zero_retention_and_newer_failures():
    sets = hourly_sets(10, verified=lambda when: when < NOW - dt.timedelta(hours=4))
    plan = retention.plan(sets, hourly=0, daily=0, weekly=0, now=NOW)
    newest_ok = retention.format_stamp(NOW.replace(minute=7) - dt.timedelta(hours=4))
    assert plan["newest_verified"] == newest_ok
    assert newest_ok in plan["keep"]
    assert "newest verified" in plan["why"][newest_ok]
    # Incomplete sets younger than the grace (an hour) are kept: they may be uploading.
    recent_incomplete = retention.format_stamp(NOW.replace(minute=7))
    assert recent_incomplete in plan["keep"]
    older_incomplete = retention.format_stamp(NOW.replace(minute=7) - dt.timedelta(hours=2))
    assert older_incomplete in plan["delete"]


def test_unverified_sets_never_count_towards_retention():
    """A failed upload in an hour must not take that hour's slot from a verified one."""
    sets = [
        {"stamp": "20260318T1107Z".replace("1107Z", "110700Z"), "verified": True},
        {"stamp": "20260318T115900Z", "verified": False},
    ]
    plan = retention.plan(sets, hourly=1, daily=0, weekly=0, now=NOW)
    assert plan["keep"][-1] == "20260318T110700Z"
    assert "hourly 2026-03-18 11h" in plan["why"]["20260318T110700Z"]


def test_foreign_names_are_ignored_not_deleted():
    sets = [{"stamp": "latest", "verified": True}, *hourly_sets(3)]
    plan = retention.plan(sets, hourly=1, daily=0, weekly=0, now=NOW)
    assert "latest" not in plan["keep"] + plan["delete"]
    assert plan["ignored"] == ["latest"]


@pytest.mark.parametrize("bad", ["2026-03-18", "20260318T120000", "20261318T120000Z", ""])
def test_stamps_must_be_exact(bad):
    with pytest.raises(ValueError):
        retention.parse_stamp(bad)
