"""Audit logging per --audit-policy-file / --audit-log-path (audit.k8s.io/v1 Events, JSON lines).

Policy evaluation follows staging/src/k8s.io/apiserver/pkg/audit/policy/checker.go: the first
rule whose users/userGroups/verbs/namespaces/resources/nonResourceURLs all match decides the
level; no match means None. Without a policy file nothing is logged. The log file rotates at
--audit-log-maxsize MB keeping --audit-log-maxbackup files (lumberjack's naming).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from .exchange import Exchange

LEVELS = ["None", "Metadata", "Request", "RequestResponse"]


def _micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    def __init__(
        self, policy_file: str | None, log_path: str | None, maxsize_mb: int = 0, maxbackup: int = 0
    ) -> None:
        self.rules: list[dict] = []
        self.omit_stages: list[str] = []
        self.enabled = bool(policy_file and log_path)
        if policy_file:
            doc = yaml.safe_load(Path(policy_file).read_text()) or {}
            if doc.get("kind") != "Policy":
                raise ValueError(f"failed to read audit policy {policy_file}: kind must be Policy")
            self.rules = doc.get("rules") or []
            self.omit_stages = doc.get("omitStages") or []
        self.path = Path(log_path) if log_path and log_path != "-" else None
        self.stdout = log_path == "-"
        self.maxsize = maxsize_mb * 1024 * 1024
        self.maxbackup = maxbackup
        self.lock = threading.Lock()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def level(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self,
        user: str,
        groups: list[str],
        verb: str,
        namespace: str,
        group: str,
        resource: str,
        subresource: str,
        name: str,
        path: str,
        resource_request: bool,
    ) -> tuple[str, list[str]]:
        for rule in self.rules:
            if rule.get("users") and user not in rule["users"]:
                continue
            if rule.get("userGroups") and not set(groups) & set(rule["userGroups"]):
                continue
            if rule.get("verbs") and verb not in rule["verbs"]:
                continue
            if resource_request:
                if rule.get("nonResourceURLs"):
                    continue
                if rule.get("namespaces") and namespace not in rule["namespaces"]:
                    continue
                if rule.get("resources") and not self._match_resources(
                    rule["resources"], group, resource, subresource, name
                ):
                    continue
            else:
                if rule.get("resources") or rule.get("namespaces"):
                    continue
                urls = rule.get("nonResourceURLs")
                if urls and not any(
                    path == u or (u.endswith("*") and path.startswith(u[:-1])) for u in urls
                ):
                    continue
            return rule.get("level", "None"), list(rule.get("omitStages") or [])
        return "None", []

    @staticmethod
    def _match_resources(
        groups: list[dict], group: str, resource: str, subresource: str, name: str
    ) -> bool:
        combined = f"{resource}/{subresource}" if subresource else resource
        for g in groups:
            if "group" in g and g["group"] not in (group, "*"):
                continue
            names = g.get("resources") or []
            if names and not any(
                n in (combined, "*", "*/*")
                or (n == f"{resource}/*" and subresource)
                or (n == f"*/{subresource}" and subresource)
                for n in names
            ):
                continue
            if g.get("resourceNames") and name not in g["resourceNames"]:
                continue
            return True
        return False

    def event(  # noqa: PLR0917 - mirrors the upstream call's parameters
        self,
        stage: str,
        level: str,
        audit_id: str,
        verb: str,
        uri: str,
        user: str,
        groups: list[str],
        source_ip: str,
        user_agent: str,
        obj_ref: dict | None,
        code: int | None,
        request_obj: dict | None,
        response_obj: dict | None,
        received: str,
        annotations: dict | None = None,
    ) -> None:
        ev = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": level,
            "auditID": audit_id,
            "stage": stage,
            "requestURI": uri,
            "verb": verb,
            "user": {"username": user, "groups": groups},
            "sourceIPs": [source_ip],
            "userAgent": user_agent,
        }
        if obj_ref:
            ev["objectRef"] = obj_ref
        if code is not None:
            ev["responseStatus"] = {"metadata": {}, "code": code}
        if level in ("Request", "RequestResponse") and request_obj is not None:
            ev["requestObject"] = request_obj
        if level == "RequestResponse" and response_obj is not None:
            ev["responseObject"] = response_obj
        ev["requestReceivedTimestamp"] = received
        ev["stageTimestamp"] = _micro()
        if annotations:
            ev["annotations"] = dict(annotations)
        self._write(json.dumps(ev, separators=(",", ":")) + "\n")

    def _write(self, line: str) -> None:
        with self.lock:
            if self.stdout:
                print(line, end="", flush=True)
                return
            if self.path is None:
                return
            if (
                self.maxsize
                and self.path.exists()
                and self.path.stat().st_size + len(line) > self.maxsize
            ):
                self._rotate()
            with open(self.path, "a") as fh:
                fh.write(line)

    def _rotate(self) -> None:
        assert self.path is not None
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        os.replace(self.path, self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}"))
        if self.maxbackup:
            backups = sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"))
            for old in backups[: -self.maxbackup]:
                old.unlink(missing_ok=True)

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def now() -> str:
        return _micro()


def _json_or_none(data: bytes) -> dict | None:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def record(log: AuditLog, ex: Exchange) -> None:
    """The events of one request (filters/audit.go WithAudit): the policy's level for it,
    RequestReceived and ResponseComplete unless omitted, request/response bodies by level.
    Unauthenticated requests are not audited (the filter runs after authentication)."""
    user = ex.user
    if not log.enabled or user is None:
        return
    route = ex.route
    res = route.res if route is not None else None
    level, omit = log.level(
        user.name,
        user.groups,
        ex.verb,
        route.namespace if route else "",
        res.group if res else "",
        res.plural if res else "",
        route.subresource if route else "",
        route.name if route else "",
        ex.path,
        res is not None,
    )
    if level == "None":
        return
    omit = set(omit) | set(log.omit_stages)
    ref = None
    if res is not None:
        ref = {"resource": res.plural, "apiVersion": res.version}
        if route.namespace:
            ref["namespace"] = route.namespace
        if route.name:
            ref["name"] = route.name
        if res.group:
            ref["apiGroup"] = res.group
        if route.subresource:
            ref["subresource"] = route.subresource
        if not route.name and ex.method == "POST":
            # audit.LogRequestObject (audit/request.go): at Metadata and above, a create's
            # objectRef takes the name of the object sent (none with generateName).
            sent = _json_or_none(ex.body)
            meta = (sent.get("metadata") or {}) if isinstance(sent, dict) else {}
            if meta.get("name"):
                ref["name"] = meta["name"]
    common = dict(
        audit_id=AuditLog.new_id(),
        verb=ex.verb,
        uri=ex.uri,
        user=user.name,
        groups=user.groups,
        source_ip=ex.source_ip,
        user_agent=ex.user_agent,
        obj_ref=ref,
        received=ex.received,
    )
    req_obj = _json_or_none(ex.body) if level in ("Request", "RequestResponse") else None
    if "RequestReceived" not in omit:
        log.event(
            "RequestReceived", level, code=None, request_obj=None, response_obj=None, **common
        )
    if "ResponseComplete" not in omit:
        log.event(
            "ResponseComplete",
            level,
            code=ex.code,
            request_obj=req_obj,
            response_obj=_json_or_none(ex.out) if level == "RequestResponse" else None,
            annotations=ex.annotations,
            **common,
        )
