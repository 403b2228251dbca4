"""
Which backup sets to keep: N hourly, M daily, K weekly, as restic's ``forget --keep-hourly
--keep-daily --keep-weekly`` counts them, and never the newest verified set.

A *set* is one backup run of a cluster: ``{"stamp": "20260101T120000Z", "verified": bool}``
(``verified`` = its manifest exists and says the snapshot passed ``etcdutl snapshot
status``). Pure functions, loaded by the ``kubeha_backup`` runner as
``__utils__["kubeha_retention.plan"]`` and tested on their own.

How the counts work (restic's rules, doc "Removing snapshots according to a policy"): the
verified sets, newest first; "keep N hourly" keeps the newest set of each of the N most
recent hours that have one, "daily" of each day, "weekly" of each ISO week; a set kept by
any rule is kept. A set without a manifest is an upload that failed or is still running: it
is kept for ``incomplete_grace_s`` (a backup running now must not lose its objects to a prune
started beside it), then deleted.
"""

from __future__ import annotations

import datetime as dt

STAMP = "%Y%m%dT%H%M%SZ"


def parse_stamp(stamp: str) -> dt.datetime:
    """``20260101T120000Z`` -> an aware UTC datetime; ValueError for anything else."""
    return dt.datetime.strptime(stamp, STAMP).replace(tzinfo=dt.UTC)


def format_stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime(STAMP)


def _buckets(when: dt.datetime) -> dict[str, tuple]:
    iso = when.isocalendar()
    return {
        "hourly": (when.year, when.month, when.day, when.hour),
        "daily": (when.year, when.month, when.day),
        "weekly": (iso.year, iso.week),
    }


def plan(
    sets: list[dict],
    *,
    hourly: int,
    daily: int,
    weekly: int,
    now: dt.datetime,
    incomplete_grace_s: float = 3600,
) -> dict:
    """
    ``{"keep": [stamps], "delete": [stamps], "why": {stamp: [reasons]}, "newest_verified":
    stamp or None}``; stamps newest first. Sets whose stamp does not parse are neither kept
    nor deleted (``ignored``): they are not ours to judge.
    """
    counts = {"hourly": int(hourly), "daily": int(daily), "weekly": int(weekly)}
    parsed, ignored = [], []
    for item in sets:
        try:
            parsed.append((parse_stamp(item["stamp"]), item))
        except (KeyError, TypeError, ValueError):
            ignored.append(item.get("stamp") if isinstance(item, dict) else item)
    parsed.sort(key=lambda pair: pair[0], reverse=True)
    why: dict[str, list[str]] = {}
    verified = [(when, item) for when, item in parsed if item.get("verified")]
    newest = verified[0][1]["stamp"] if verified else None
    if newest:
        why.setdefault(newest, []).append("newest verified")
    for rule, limit in counts.items():
        seen: set[tuple] = set()
        for when, item in verified:
            if len(seen) >= limit:
                break
            bucket = _buckets(when)[rule]
            if bucket in seen:
                continue
            seen.add(bucket)
            why.setdefault(item["stamp"], []).append(f"{rule} {when:%Y-%m-%d %H}h")
    for when, item in parsed:
        if not item.get("verified") and (now - when).total_seconds() < incomplete_grace_s:
            why.setdefault(item["stamp"], []).append("incomplete, may still be uploading")
    keep = [item["stamp"] for _, item in parsed if item["stamp"] in why]
    delete = [item["stamp"] for _, item in parsed if item["stamp"] not in why]
    return {
        "keep": keep,
        "delete": delete,
        "why": {stamp: why[stamp] for stamp in keep},
        "newest_verified": newest,
        "ignored": ignored,
    }
