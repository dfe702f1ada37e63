"""DescribeImageReferences: the instances, launch templates, SSM parameters and recipes that use an AMI."""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.responses.amis import AmisResponse

from .common import ClientError

# DescribeImageReferences ({REF}/API_DescribeImageReferences.html, ResourceTypeOption; EC2 User
# Guide "Identify your resources referencing specified AMIs"): ResourceTypes (or
# IncludeAllResourceTypes, whose defaults ResourceTypes' options override) name what is checked.
# ec2:Instance covers instances in every state, terminated included, unless the `state-name`
# option narrows them; ec2:LaunchTemplate covers the 10 most recent versions unless
# `version-depth` (1-10000) says otherwise; ssm:Parameter and the Image Builder recipes are
# reported. moto does not implement the call.
INSTANCE_STATES = ["pending", "running", "shutting-down", "terminated", "stopping", "stopped"]


def describe_image_references(self: Any) -> ActionResult:
    backend = self.ec2_backend
    ids = self._get_param("ImageIds", [])
    self.error_on_dryrun()
    for image_id in ids:
        if image_id not in backend.amis:
            raise ClientError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
    every = str(self._get_param("IncludeAllResourceTypes", "false")).lower() == "true"
    requested = {t.get("ResourceType"): t.get("ResourceTypeOptions", []) for t in self._get_param("ResourceTypes", [])}
    if not every and not requested:
        raise ClientError("MissingParameter", "Either IncludeAllResourceTypes or ResourceTypes must be specified.")
    kinds = (
        [
            "ec2:Instance",
            "ec2:LaunchTemplate",
            "ssm:Parameter",
            "imagebuilder:ImageRecipe",
            "imagebuilder:ContainerRecipe",
        ]
        if every
        else list(requested)
    )

    def option(kind: str, name: str) -> list[str] | None:
        for o in requested.get(kind, []):
            if o.get("OptionName") == name:
                return list(o.get("OptionValues", []))
        return None

    account, region = backend.account_id, backend.region_name
    refs: list[dict[str, str]] = []
    if "ec2:Instance" in kinds:
        states = option("ec2:Instance", "state-name") or INSTANCE_STATES
        for inst in backend.all_instances():
            if inst.image_id in ids and inst.state in states:
                arn = f"arn:aws:ec2:{region}:{account}:instance/{inst.id}"
                refs.append({"ImageId": inst.image_id, "ResourceType": "ec2:Instance", "Arn": arn})
    if "ec2:LaunchTemplate" in kinds:
        depth_option = option("ec2:LaunchTemplate", "version-depth")
        depth = int(depth_option[0]) if depth_option else 10
        if not 1 <= depth <= 10000:
            raise ClientError("InvalidParameterValue", f"version-depth {depth} is not between 1 and 10000")
        for template in backend.launch_templates.values():
            named = {resolved(backend, v.data.get("ImageId")) for v in template.versions[-depth:]}
            for image in sorted(i for i in named if i is not None and i in ids):
                arn = f"arn:aws:ec2:{region}:{account}:launch-template/{template.id}"
                refs.append({"ImageId": image, "ResourceType": "ec2:LaunchTemplate", "Arn": arn})
    if "ssm:Parameter" in kinds:
        from moto.ssm.models import ssm_backends

        for name, versions in list(ssm_backends[account][region]._parameters.items()):
            if versions and versions[-1].value in ids:
                arn = f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"
                refs.append({"ImageId": versions[-1].value, "ResourceType": "ssm:Parameter", "Arn": arn})
    return ActionResult({"ImageReferences": refs})


def resolved(backend: Any, image_id: str | None) -> str | None:
    """The AMI behind a launch template's `resolve:ssm:<parameter>` ImageId (else the id)."""
    if not image_id or not image_id.startswith("resolve:ssm:"):
        return image_id
    from moto.ssm.models import ssm_backends

    name = image_id[len("resolve:ssm:") :].split(":")[0]
    versions = ssm_backends[backend.account_id][backend.region_name]._parameters.get(name)
    return versions[-1].value if versions else image_id


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    AmisResponse.describe_image_references = describe_image_references
