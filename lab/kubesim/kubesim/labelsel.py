"""Label and field selectors (k8s.io/apimachinery/pkg/labels and pkg/fields, the common subset)."""

from __future__ import annotations

import re

_SET = re.compile(
    r"^\s*(!?)([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\)|(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*$"
)


def _split(selector: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_labels(selector: str | None) -> list[tuple[str, str, list[str]]]:
    """[(key, op, values)] with op in =, !=, in, notin, exists, !exists."""
    if not selector:
        return []
    out = []
    for term in _split(selector):
        m = _SET.match(term)
        if not m:
            raise ValueError(f"unable to parse requirement: {term!r}")
        neg, key, setop, setvals, op, val = m.groups()
        if setop:
            out.append((key, setop, [v.strip() for v in setvals.split(",") if v.strip()]))
        elif op:
            out.append((key, "!=" if op == "!=" else "=", [val]))
        else:
            out.append((key, "!exists" if neg else "exists", []))
    return out


def match_labels(reqs: list[tuple[str, str, list[str]]], labels: dict | None) -> bool:
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        val = labels.get(key)
        if (op == "=" and val != vals[0]) or (op == "!=" and has and val == vals[0]):
            return False
        if (op == "in" and val not in vals) or (op == "notin" and has and val in vals):
            return False
        if (op == "exists" and not has) or (op == "!exists" and has):
            return False
    return True


def match_label_selector(selector: dict | None, labels: dict | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions); an empty one matches all."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, vals = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and key in labels and labels[key] in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


BOOL_FIELDS = {"spec.unschedulable"}  # pkg/registry/core/node/strategy.go NodeToSelectableFields


def field_value(obj: dict, path: str) -> str:
    cur: object = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if isinstance(cur, bool) or (cur is None and path in BOOL_FIELDS):
        return "true" if cur else "false"  # strconv.FormatBool
    return "" if cur is None else str(cur)


def parse_fields(selector: str | None) -> list[tuple[str, str, str]]:
    if not selector:
        return []
    out = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                key, val = term.split(op, 1)
                out.append((key.strip(), "!=" if op == "!=" else "=", val.strip()))
                break
        else:
            raise ValueError(f"invalid selector: '{term}'; can't understand '{term}'")
    return out


def match_fields(reqs: list[tuple[str, str, str]], obj: dict) -> bool:
    for key, op, val in reqs:
        have = field_value(obj, key)
        if (op == "=") != (have == val):
            return False
    return True
