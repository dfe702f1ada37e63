"""AMI usage reports: built asynchronously, one at a time per AMI, missing recent use."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models import amis as moto_amis
from moto.ec2.responses.amis import AmisResponse

from .common import ClientError, owned_image, page_of

# AMI usage reports ({REF}/API_CreateImageUsageReport.html, API_DescribeImageUsageReports.html,
# API_DescribeImageUsageReportEntries.html; EC2 User Guide "View your AMI usage"): the owner of an
# AMI asks EC2 which accounts use it. A report is `pending` while EC2 builds it (asynchronously),
# then `available` with one entry per account and resource type (UsageCount: how many of that
# account's resources of that type use the AMI; a launch template counts once) or `error`.
# ResourceTypes are ec2:Instance, ec2:LaunchTemplate and the two Image Builder recipes;
# `version-depth` (1-10000, default 20) is an option of ec2:LaunchTemplate only. One report per
# AMI may be in progress at a time (Service Quotas, "in-progress reports per AMI: 1"; the error
# code is not documented, this answers ResourceLimitExceeded). EC2 deletes a report 30 days after
# it was created (ExpirationTime). Only the owner may ask about an AMI. moto implements none of
# it. EC2 builds a report from other accounts' resources, which one emulated account cannot hold,
# so a test completes a pending report with the entries it wants (`POST /_testbed/usage-report`).
# A report misses recent use (User Guide: "Instance activity from the past 24 hours and launch
# template activity from the past few days might not appear in the report"): an entry whose use
# began (`since`) within USAGE_LAG_HOURS before the report was made is left out, the worst case
# AWS allows. "A few days" is taken as three.
USAGE_LAG_HOURS = {"ec2:Instance": 24, "ec2:LaunchTemplate": 72}


USAGE_PENDING_QUOTA = 2000


USAGE_RESOURCE_TYPES = {
    "ec2:Instance",
    "ec2:LaunchTemplate",
    "imagebuilder:ImageRecipe",
    "imagebuilder:ContainerRecipe",
}


USAGE_REPORTS: dict[str, dict[str, Any]] = {}


USAGE_TOKENS: dict[tuple[str, str, str], str] = {}


USAGE_LOCK = threading.RLock()


def _usage_report_view(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: r[k] for k in ("ImageId", "ReportId", "ResourceTypes", "State", "CreationTime", "ExpirationTime")}
    if r["AccountIds"]:
        out["AccountIds"] = r["AccountIds"]
    if r.get("StateReason"):
        out["StateReason"] = r["StateReason"]
    return out


def create_image_usage_report(self: Any) -> ActionResult:
    import secrets

    backend = self.ec2_backend
    self.error_on_dryrun()
    ami = owned_image(self, self._get_param("ImageId"))
    types = self._get_param("ResourceTypes", [])
    for t in types:
        kind = t.get("ResourceType")
        if kind not in USAGE_RESOURCE_TYPES:
            raise ClientError("InvalidParameterValue", f"Invalid resource type: {kind}")
        for option in t.get("ResourceTypeOptions", []):
            if kind != "ec2:LaunchTemplate" or option.get("OptionName") != "version-depth":
                raise ClientError("InvalidParameterValue", f"Invalid option {option.get('OptionName')} for {kind}")
            values = option.get("OptionValues", [])
            if len(values) != 1 or not str(values[0]).isdigit() or not 1 <= int(values[0]) <= 10000:
                raise ClientError("InvalidParameterValue", "version-depth must be one value from 1 to 10000")
    token = self._get_param("ClientToken")
    key = (backend.account_id, backend.region_name, token or "")
    with USAGE_LOCK:
        if token and key in USAGE_TOKENS:
            return ActionResult({"ReportId": USAGE_TOKENS[key]})
        pending = [
            r
            for r in USAGE_REPORTS.values()
            if r["State"] == "pending" and r["Region"] == backend.region_name and r["Account"] == backend.account_id
        ]
        for r in pending:
            if r["ImageId"] == ami.id:
                raise ClientError(
                    "ResourceLimitExceeded", f"A usage report for {ami.id} is already in progress ({r['ReportId']})."
                )
        # At most 2,000 reports in progress per account and region (User Guide, "View your AMI
        # usage", quotas).
        if len(pending) >= USAGE_PENDING_QUOTA:
            raise ClientError(
                "ResourceLimitExceeded",
                f"You have reached the limit of {USAGE_PENDING_QUOTA} usage reports in progress.",
            )
        now = datetime.now(timezone.utc)
        report_id = f"amiur-{secrets.token_hex(9)[:17]}"
        USAGE_REPORTS[report_id] = {
            "Region": backend.region_name,
            "Account": backend.account_id,
            "ImageId": ami.id,
            "ReportId": report_id,
            "ResourceTypes": [
                {
                    "ResourceType": t["ResourceType"],
                    **({"ResourceTypeOptions": t["ResourceTypeOptions"]} if t.get("ResourceTypeOptions") else {}),
                }
                for t in types
            ],
            "AccountIds": list(self._get_param("AccountIds", [])),
            "State": "pending",
            "CreationTime": now,
            "ExpirationTime": now + timedelta(days=30),
            "Entries": [],
        }
        if token:
            USAGE_TOKENS[key] = report_id
    return ActionResult({"ReportId": report_id})


def _usage_reports_in(self: Any) -> list[dict[str, Any]]:
    backend = self.ec2_backend
    image_ids = self._get_param("ImageIds", [])
    report_ids = self._get_param("ReportIds", [])
    filters = {f["Name"]: f.get("Values", []) for f in self._get_param("Filters", [])}
    now = datetime.now(timezone.utc)
    with USAGE_LOCK:
        for rid in [r for r, v in USAGE_REPORTS.items() if v["ExpirationTime"] <= now]:
            del USAGE_REPORTS[rid]
        found = [
            r
            for r in USAGE_REPORTS.values()
            if r["Region"] == backend.region_name
            and r["Account"] == backend.account_id
            and (not image_ids or r["ImageId"] in image_ids)
            and (not report_ids or r["ReportId"] in report_ids)
            and ("state" not in filters or r["State"] in filters["state"])
        ]
    return sorted(found, key=lambda r: (r["CreationTime"], r["ReportId"]))


def describe_image_usage_reports(self: Any) -> ActionResult:
    self.error_on_dryrun()
    page, token = page_of(self, _usage_reports_in(self), 1000)
    out: dict[str, Any] = {"ImageUsageReports": [_usage_report_view(r) for r in page]}
    if token:
        out["NextToken"] = token
    return ActionResult(out)


def describe_image_usage_report_entries(self: Any) -> ActionResult:
    self.error_on_dryrun()
    filters = {f["Name"]: f.get("Values", []) for f in self._get_param("Filters", [])}
    entries = [
        {
            "ResourceType": e["resource_type"],
            "ReportId": r["ReportId"],
            "UsageCount": int(e["usage_count"]),
            "AccountId": e["account_id"],
            "ImageId": r["ImageId"],
            "ReportCreationTime": r["CreationTime"],
        }
        for r in _usage_reports_in(self)
        if r["State"] == "available"
        for e in r["Entries"]
        if ("account-id" not in filters or e["account_id"] in filters["account-id"])
        and ("resource-type" not in filters or e["resource_type"] in filters["resource-type"])
    ]
    page, token = page_of(self, entries, 1000)
    out: dict[str, Any] = {"ImageUsageReportEntries": page}
    if token:
        out["NextToken"] = token
    return ActionResult(out)


def complete_usage_report(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: EC2 finishes the image's pending report with these entries (or, with none
    pending, a report made earlier at `creation_time`, over `resource_types` and `account_ids`,
    by default every account's instances, launch templates and Image Builder recipes, is there
    already). An entry whose use began (`since`) too shortly before the report is left out."""
    import secrets

    account = body.get("account_id", "123456789012")
    created = (
        moto_amis.parse_timestamp(body["creation_time"]).replace(tzinfo=timezone.utc)
        if "creation_time" in body
        else datetime.now(timezone.utc)
    )
    with USAGE_LOCK:
        pending = [
            r
            for r in USAGE_REPORTS.values()
            if r["ImageId"] == body["image_id"] and r["Region"] == body["region"] and r["State"] == "pending"
        ]
        if pending:
            report = pending[0]
        else:
            report_id = f"amiur-{secrets.token_hex(9)[:17]}"
            report = USAGE_REPORTS[report_id] = {
                "Region": body["region"],
                "Account": account,
                "ImageId": body["image_id"],
                "ReportId": report_id,
                "ResourceTypes": body.get("resource_types")
                or [
                    {"ResourceType": "ec2:Instance"},
                    {"ResourceType": "imagebuilder:ImageRecipe"},
                    {"ResourceType": "imagebuilder:ContainerRecipe"},
                    {
                        "ResourceType": "ec2:LaunchTemplate",
                        "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["10000"]}],
                    },
                ],
                "AccountIds": body.get("account_ids", []),
                "CreationTime": created,
                "ExpirationTime": created + timedelta(days=30),
            }
        report["State"] = body.get("state", "available")
        if report["State"] == "error":
            report["StateReason"] = body.get("state_reason", "The report could not be created.")
        report["Entries"] = [e for e in body.get("entries", []) if _seen_by(report, e)]
        return {"report_id": report["ReportId"], "missed": len(body.get("entries", [])) - len(report["Entries"])}


def _seen_by(report: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Whether a report shows a use that began at the entry's `since` (default: long before)."""

    if "since" not in entry:
        return True
    since = moto_amis.parse_timestamp(entry["since"]).replace(tzinfo=timezone.utc)
    lag = timedelta(hours=USAGE_LAG_HOURS.get(entry["resource_type"], 0))
    return since <= report["CreationTime"] - lag


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    AmisResponse.create_image_usage_report = create_image_usage_report
    AmisResponse.describe_image_usage_reports = describe_image_usage_reports
    AmisResponse.describe_image_usage_report_entries = describe_image_usage_report_entries
