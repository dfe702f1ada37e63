"""The Recycle Bin: retention rules, binned AMIs and snapshots, restores."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import contract
import iam_requests
from moto.core.responses import ActionResult
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from werkzeug.wrappers import Response

from .common import ClientError, page_of, snapshot_ids_of, tags_of

# The Recycle Bin (Recycle Bin API reference, ListRules, GetRule, CreateRule; EBS User Guide
# "Recycle Bin", "Considerations": retention rules per region and resource type; a rule with
# ResourceTags retains the resources carrying any of them; a rule without (region-level)
# retains every resource of its type except those carrying one of its ExcludeResourceTags; when
# several match, the longest retention wins). A deregistered AMI or a deleted snapshot that a
# rule retains goes to the bin until its retention ends: ListImagesInRecycleBin and
# ListSnapshotsInRecycleBin list them, RestoreSnapshotFromRecycleBin and
# RestoreImageFromRecycleBin bring them back; an AMI is restored only once every snapshot it
# needs is back (EC2 User Guide, "Recover AMIs from the Recycle Bin": "you must first restore
# the snapshots"; the error code is not documented, this answers InvalidSnapshot.NotFound).
# Launch permissions are removed on the way in and come back with the AMI. moto implements
# neither the `rbin` service nor these EC2 calls.
RBIN_RULES: dict[tuple[str, str], dict[str, Any]] = {}  # (region, identifier) -> rule


BIN_IMAGES: dict[tuple[str, str], dict[str, Any]] = {}  # (region, image id) -> entry


BIN_SNAPSHOTS: dict[tuple[str, str], dict[str, Any]] = {}


BIN_LOCK = threading.RLock()


def _rule_retains(rule: dict[str, Any], tags: dict[str, str]) -> bool:
    if rule.get("Status", "available") != "available":
        return False
    wanted = rule.get("ResourceTags") or []
    if wanted:
        return any(
            tags.get(t["ResourceTagKey"]) == t.get("ResourceTagValue", tags.get(t["ResourceTagKey"]))
            and t["ResourceTagKey"] in tags
            for t in wanted
        )
    excluded = rule.get("ExcludeResourceTags") or []
    return not any(
        t["ResourceTagKey"] in tags
        and tags.get(t["ResourceTagKey"]) == t.get("ResourceTagValue", tags[t["ResourceTagKey"]])
        for t in excluded
    )


def _retention_days(region: str, kind: str, tags: dict[str, str]) -> int | None:
    with BIN_LOCK:
        days = [
            r["RetentionPeriod"]["RetentionPeriodValue"]
            for (reg, _), r in RBIN_RULES.items()
            if reg == region and r["ResourceType"] == kind and _rule_retains(r, tags)
        ]
    return max(days) if days else None


def _to_bin(
    store: dict[tuple[str, str], dict[str, Any]], kind: str, backend: Any, resource_id: str, entry: dict[str, Any]
) -> None:
    """Keeps a resource that is being removed in the bin, when a rule of `kind` retains it."""

    tags = tags_of(backend, resource_id)
    days = _retention_days(backend.region_name, kind, tags)
    if days is None:
        return
    now = datetime.now(timezone.utc)
    with BIN_LOCK:
        store[(backend.region_name, resource_id)] = {
            **entry,
            "tags": tags,
            "enter": now,
            "exit": now + timedelta(days=days),
        }


def binned(region: str, resource_id: str) -> dict[str, Any] | None:
    """The Recycle Bin's entry for an AMI or snapshot, if it holds it (for IAM's context keys)."""
    with BIN_LOCK:
        return BIN_IMAGES.get((region, resource_id)) or BIN_SNAPSHOTS.get((region, resource_id))


iam_requests.BINNED = binned


def bin_image(backend: Any, ami: Any) -> None:
    """Called as DeregisterImage removes an AMI. The Recycle Bin keeps EBS-backed AMIs only
    (EC2 User Guide, "Recycle Bin": instance store-backed AMIs are not supported)."""
    if getattr(ami, "root_device_type", "ebs") == "instance-store":
        return
    _to_bin(BIN_IMAGES, "EC2_IMAGE", backend, ami.id, {"ami": ami})


def bin_snapshot(backend: Any, snapshot: Any) -> None:
    """Called as a snapshot is deleted."""
    _to_bin(BIN_SNAPSHOTS, "EBS_SNAPSHOT", backend, snapshot.id, {"snapshot": snapshot})


def _in_bin(store: dict[tuple[str, str], dict[str, Any]], region: str) -> dict[str, dict[str, Any]]:
    now = datetime.now(timezone.utc)
    with BIN_LOCK:
        for key in [k for k, v in store.items() if v["exit"] <= now]:
            del store[key]
        return {rid: v for (reg, rid), v in store.items() if reg == region}


def list_images_in_recycle_bin(self: Any) -> ActionResult:
    self.error_on_dryrun()
    wanted = self._get_param("ImageIds", [])
    found = _in_bin(BIN_IMAGES, self.ec2_backend.region_name)
    rows = [
        {
            "ImageId": i,
            "Name": v["ami"].name,
            "Description": v["ami"].description or "",
            "RecycleBinEnterTime": v["enter"],
            "RecycleBinExitTime": v["exit"],
        }
        for i, v in sorted(found.items())
        if not wanted or i in wanted
    ]
    page, token = page_of(self, rows, 1000)
    return ActionResult({"Images": page, **({"NextToken": token} if token else {})})


def list_snapshots_in_recycle_bin(self: Any) -> ActionResult:
    self.error_on_dryrun()
    wanted = self._get_param("SnapshotIds", [])
    found = _in_bin(BIN_SNAPSHOTS, self.ec2_backend.region_name)
    rows = [
        {
            "SnapshotId": i,
            "Description": v["snapshot"].description or "",
            "VolumeId": v["snapshot"].volume.id,
            "RecycleBinEnterTime": v["enter"],
            "RecycleBinExitTime": v["exit"],
        }
        for i, v in sorted(found.items())
        if not wanted or i in wanted
    ]
    page, token = page_of(self, rows, 1000)
    return ActionResult({"Snapshots": page, **({"NextToken": token} if token else {})})


def restore_snapshot_from_recycle_bin(self: Any) -> ActionResult:
    backend = self.ec2_backend
    snapshot_id = self._get_param("SnapshotId")
    self.error_on_dryrun()
    with BIN_LOCK:
        entry = _in_bin(BIN_SNAPSHOTS, backend.region_name).get(snapshot_id)
        if entry is None:
            raise ClientError("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' is not in the Recycle Bin.")
        del BIN_SNAPSHOTS[(backend.region_name, snapshot_id)]
    snap = entry["snapshot"]
    backend.snapshots[snapshot_id] = snap
    for key, value in entry["tags"].items():
        backend.tags.setdefault(snapshot_id, {})[key] = value
    return ActionResult(
        {
            "SnapshotId": snapshot_id,
            "Description": snap.description or "",
            "Encrypted": bool(snap.encrypted),
            "OwnerId": snap.owner_id,
            "State": "completed",
            "VolumeId": snap.volume.id,
            "VolumeSize": int(snap.volume.size),
            "StartTime": snap.start_time,
        }
    )


def restore_image_from_recycle_bin(self: Any) -> ActionResult:
    backend = self.ec2_backend
    image_id = self._get_param("ImageId")
    self.error_on_dryrun()
    with BIN_LOCK:
        entry = _in_bin(BIN_IMAGES, backend.region_name).get(image_id)
        if entry is None:
            raise ClientError("InvalidAMIID.NotFound", f"The image '{image_id}' is not in the Recycle Bin.")
        ami = entry["ami"]
        missing = [s for s in snapshot_ids_of(ami) if s not in backend.snapshots]
        if missing:
            raise ClientError(
                "InvalidSnapshot.NotFound",
                f"Restore the snapshots of {image_id} from the Recycle Bin first: {', '.join(missing)}",
            )
        del BIN_IMAGES[(backend.region_name, image_id)]
    backend.amis[image_id] = ami
    for key, value in entry["tags"].items():
        backend.tags.setdefault(image_id, {})[key] = value
    return ActionResult({"Return": True})


def _rbin_rule_view(rule: dict[str, Any], full: bool) -> dict[str, Any]:
    keys = ("Identifier", "Description", "RetentionPeriod", "LockState", "RuleArn")
    if full:
        keys += ("ResourceType", "ResourceTags", "ExcludeResourceTags", "Status")
    return {k: rule[k] for k in keys if k in rule}


def rbin_response(environ: dict[str, Any], body: bytes) -> Response:
    """The `rbin` service (rest-json): CreateRule, ListRules, GetRule."""
    import secrets

    region = contract.signing_region(environ)
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
    model = contract._SESSION.get_service_model("rbin")

    def answer(payload: dict[str, Any], status: int = 200) -> Response:
        return Response(
            json.dumps(payload, default=lambda t: t.timestamp()), status=status, content_type="application/json"
        )

    def invalid(message: str, status: int = 400, code: str = "ValidationException") -> Response:
        return Response(
            json.dumps({"Message": message}),
            status=status,
            content_type="application/json",
            headers={"x-amzn-ErrorType": code},
        )

    document = json.loads(body) if body.strip() else {}
    operation = {("POST", "/rules"): "CreateRule", ("POST", "/list-rules"): "ListRules"}.get((method, path))
    if operation is None and method == "GET" and path.startswith("/rules/"):
        operation = "GetRule"
    if operation is None:
        return invalid(
            f"{method} {path} is not an operation of the Recycle Bin this test bed serves",
            404,
            "ResourceNotFoundException",
        )
    if operation != "GetRule":
        found = contract.check_json(model, operation, document)
        if found:
            return invalid(found[1])
    with BIN_LOCK:
        if operation == "CreateRule":
            identifier = secrets.token_hex(6)[:11]
            rule = {
                "Identifier": identifier,
                "Description": document.get("Description", ""),
                "ResourceType": document["ResourceType"],
                "RetentionPeriod": document["RetentionPeriod"],
                "ResourceTags": document.get("ResourceTags", []),
                "ExcludeResourceTags": document.get("ExcludeResourceTags", []),
                "Status": "available",
                "LockState": "unlocked",
                "RuleArn": f"arn:aws:rbin:{region}:123456789012:rule/{identifier}",
            }
            if rule["ResourceTags"] and rule["ExcludeResourceTags"]:
                return invalid("ExcludeResourceTags is only for region-level rules (no ResourceTags).")
            RBIN_RULES[(region, identifier)] = rule
            return answer(_rbin_rule_view(rule, True), 201)
        if operation == "GetRule":
            rule = RBIN_RULES.get((region, path[len("/rules/") :]))
            if rule is None:
                return invalid("No such rule.", 404, "ResourceNotFoundException")
            return answer(_rbin_rule_view(rule, True))
        rules = [
            r
            for (reg, _), r in sorted(RBIN_RULES.items())
            if reg == region
            and r["ResourceType"] == document["ResourceType"]
            and ("LockState" not in document or r["LockState"] == document["LockState"])
        ]
        start = int(document.get("NextToken") or 0)
        size = int(document.get("MaxResults") or 1000)
        page = rules[start : start + size]
        out: dict[str, Any] = {"Rules": [_rbin_rule_view(r, False) for r in page]}
        if start + size < len(rules):
            out["NextToken"] = str(start + size)
        return answer(out)


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    AmisResponse.list_images_in_recycle_bin = list_images_in_recycle_bin
    ElasticBlockStore.list_snapshots_in_recycle_bin = list_snapshots_in_recycle_bin
    ElasticBlockStore.restore_snapshot_from_recycle_bin = restore_snapshot_from_recycle_bin
    AmisResponse.restore_image_from_recycle_bin = restore_image_from_recycle_bin
