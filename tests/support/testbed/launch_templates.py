"""Launch template versions: describe, delete and create as the EC2 API reference documents them."""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models import launch_templates as moto_launch_templates
from moto.ec2.responses.launch_templates import LaunchTemplates as LaunchTemplatesResponse

from .common import ClientError, atomic, page_of
from .instances import request_signature
from .references import resolved


# DescribeLaunchTemplateVersions ({REF}/API_DescribeLaunchTemplateVersions.html): versions are
# found by number (a deleted one named in Versions is InvalidLaunchTemplateId.VersionNotFound);
# MinVersion is "the version number after which", MaxVersion "the version number up to which",
# so a range simply skips deleted versions; ResolveAlias=true answers the AMI behind a
# `resolve:ssm:` ImageId (default false: the alias); MaxResults (1-200) pages with NextToken.
# DeleteLaunchTemplateVersions ({REF}/API_DeleteLaunchTemplateVersions.html) deletes versions,
# never the default one. moto indexes versions by position and implements neither.
def describe_launch_template_versions(self: Any) -> ActionResult:
    backend = self.ec2_backend
    name = self._get_param("LaunchTemplateName")
    template_id = self._get_param("LaunchTemplateId")
    versions = self._get_param("Versions", [])
    low, high = self._get_param("MinVersion"), self._get_param("MaxVersion")
    resolve = str(self._get_param("ResolveAlias", "false")).lower() == "true"
    self.error_on_dryrun()
    if name:
        template = backend.get_launch_template_by_name(name)
    elif template_id:
        template = backend.get_launch_template(template_id)
    else:
        template = None
    found: list[tuple[Any, Any]] = []
    if template is None:
        for t in backend.launch_templates.values():
            for v in versions:
                found.append((t, _version(t, v)))
    elif versions:
        found = [(template, _version(template, v)) for v in versions]
    else:
        found = [
            (template, v)
            for v in template.versions
            if (low is None or v.number > int(low)) and (high is None or v.number <= int(high))
        ]
    page, token = page_of(self, found, 200)
    out = []
    for t, v in page:
        data = dict(v.data)
        if resolve and data.get("ImageId"):
            data["ImageId"] = resolved(backend, data["ImageId"])
        out.append(
            {
                "CreateTime": v.create_time,
                "DefaultVersion": t.default_version_number == v.number,
                "LaunchTemplateData": data,
                "LaunchTemplateId": t.id,
                "LaunchTemplateName": t.name,
                "VersionDescription": v.description,
                "VersionNumber": v.number,
            }
        )
    result: dict[str, Any] = {"LaunchTemplateVersions": out}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


def _version(template: Any, wanted: str) -> Any:
    if str(wanted).lower() == "$latest":
        return template.versions[-1]
    number = template.default_version_number if str(wanted).lower() == "$default" else int(wanted)
    for v in template.versions:
        if v.number == number:
            return v
    raise ClientError(
        "InvalidLaunchTemplateId.VersionNotFound", f"Could not find launch template version {wanted} for {template.id}"
    )


def delete_launch_template_versions(self: Any) -> ActionResult:
    backend = self.ec2_backend
    name = self._get_param("LaunchTemplateName")
    template = (
        backend.get_launch_template_by_name(name)
        if name
        else backend.get_launch_template(self._get_param("LaunchTemplateId"))
    )
    self.error_on_dryrun()
    deleted, failed = [], []
    for wanted in self._get_param("Versions", []):
        number = int(wanted)
        match = [v for v in template.versions if v.number == number]
        if not match or number == template.default_version_number:
            code = "launchTemplateVersionDoesNotExist" if not match else "launchTemplateVersionIsDefaultVersion"
            failed.append(
                {
                    "LaunchTemplateId": template.id,
                    "LaunchTemplateName": template.name,
                    "VersionNumber": number,
                    "ResponseError": {"Code": code, "Message": code},
                }
            )
            continue
        template.versions.remove(match[0])
        deleted.append({"LaunchTemplateId": template.id, "LaunchTemplateName": template.name, "VersionNumber": number})
    return ActionResult(
        {"SuccessfullyDeletedLaunchTemplateVersions": deleted, "UnsuccessfullyDeletedLaunchTemplateVersions": failed}
    )


def _create_version(self: Any, data: dict[str, Any], description: str) -> Any:
    # Version numbers keep counting after a deletion (moto reuses len + 1).
    number = max((v.number for v in self.versions), default=0) + 1
    version = moto_launch_templates.LaunchTemplateVersion(self, number, data, description)
    self.versions.append(version)
    return version


# CreateLaunchTemplateVersion ({REF}/API_CreateLaunchTemplateVersion.html): "If you specify
# [SourceVersion], the new version inherits the launch parameters from the source version. If
# you specify additional launch parameters for the new version, they overwrite any corresponding
# launch parameters inherited from the source version", and ClientToken makes the request
# idempotent (same token and parameters: the same version; different parameters:
# IdempotentParameterMismatch). moto ignores both: the new version holds only what was sent, and
# every call makes a version.
TEMPLATE_TOKENS: dict[tuple[str, str, str], tuple[str, str, int]] = {}


def create_launch_template_version(self: Any) -> ActionResult:
    backend = self.ec2_backend
    name, template_id = self._get_param("LaunchTemplateName"), self._get_param("LaunchTemplateId")
    template = backend.get_launch_template_by_name(name) if name else backend.get_launch_template(template_id)
    token = self._get_param("ClientToken")
    self.error_on_dryrun()
    key = (self.current_account, self.region, token or "")
    signature = request_signature(self, "ClientToken")
    if token and key in TEMPLATE_TOKENS:
        seen, tid, number = TEMPLATE_TOKENS[key]
        if seen != signature or tid != template.id:
            raise ClientError(
                "IdempotentParameterMismatch",
                "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
            )
        version = _version(template, str(number))
    else:
        data = dict(self._get_param("LaunchTemplateData", {}))
        source = self._get_param("SourceVersion")
        if source is not None:
            inherited = dict(_version(template, str(source)).data)
            # "Snapshots applied to the block device mapping are ignored when creating a new
            # version unless they are explicitly included."
            if "BlockDeviceMappings" in inherited and "BlockDeviceMappings" not in data:
                inherited["BlockDeviceMappings"] = [
                    {**m, "Ebs": {k: v for k, v in (m.get("Ebs") or {}).items() if k != "SnapshotId"}}
                    if m.get("Ebs")
                    else m
                    for m in inherited["BlockDeviceMappings"]
                ]
            data = {**inherited, **data}
        version = template.create_version(data, self._get_param("VersionDescription"))
        if token:
            TEMPLATE_TOKENS[key] = (signature, template.id, version.number)
    return ActionResult(
        {
            "LaunchTemplateVersion": {
                "CreateTime": version.create_time,
                "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
                "DefaultVersion": template.is_default(version),
                "LaunchTemplateData": version.data,
                "LaunchTemplateId": template.id,
                "LaunchTemplateName": template.name,
                "VersionDescription": version.description,
                "VersionNumber": version.number,
            }
        }
    )


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    LaunchTemplatesResponse.create_launch_template_version = atomic(create_launch_template_version)
    LaunchTemplatesResponse.describe_launch_template_versions = describe_launch_template_versions
    LaunchTemplatesResponse.delete_launch_template_versions = delete_launch_template_versions
    moto_launch_templates.LaunchTemplate.create_version = _create_version
