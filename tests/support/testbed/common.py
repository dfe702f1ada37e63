"""What the sections share: EC2's error, image helpers, paging, ownership, the creation lock."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import amis as moto_amis
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

REF = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference"


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class ClientError(EC2ClientError):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)


# ---------------------------------------------------------------------------------------------
# Images carry their real block device mappings (one snapshot per EBS volume).
# ---------------------------------------------------------------------------------------------
Ami = moto_amis.Ami


_moto_bdm = Ami.block_device_mappings


def _ami_bdm(self: Any) -> list[dict[str, Any]]:
    mappings = getattr(self, "_mappings", None)
    return mappings if mappings is not None else _moto_bdm.fget(self)


Ami.block_device_mappings = property(_ami_bdm)


def snapshot_ids_of(ami: Any) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in ami.block_device_mappings if m.get("Ebs", {}).get("SnapshotId")]


def drop_auto_snapshot(backend: Any, ami: Any) -> None:
    """moto makes a fresh 15 GiB snapshot for every image; a patched image has real ones."""
    backend.snapshots.pop(ami.ebs_snapshot.id, None)


def tags_for(tag_specs: list[dict[str, Any]], resource_type: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for spec in tag_specs:
        if spec.get("ResourceType") == resource_type:
            for tag in spec.get("Tags", []):
                tags[tag["Key"]] = tag.get("Value", "")
    return tags


def check_tag_types(tag_specs: list[dict[str, Any]]) -> None:
    for spec in tag_specs:
        if spec.get("ResourceType") not in ("image", "snapshot"):
            raise ClientError(
                "InvalidParameterValue",
                f"'{spec.get('ResourceType')}' is not a valid taggable resource type for this operation.",
            )


# EC2 checks a name or a client token and creates the image atomically; moto's server is
# threaded, so the patched creations below hold this lock from the check to the creation.
CREATE_LOCK = threading.RLock()


def atomic(fn: Any) -> Any:
    def wrapper(self: Any) -> Any:
        with CREATE_LOCK:
            return fn(self)

    wrapper.__name__ = fn.__name__
    return wrapper


def check_unique_name(backend: Any, name: str | None) -> None:
    # CreateImage / RegisterImage / CopyImage: "InvalidAMIName.Duplicate: The specified AMI
    # name is already in use by an AMI owned by your account." ({REF}/errors-overview.html)
    if name and any(a.name == name and a.owner_id == backend.account_id for a in backend.amis.values()):
        raise ClientError("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI")


def one_page(self: Any, items: list[Any]) -> tuple[list[Any], str | None]:
    max_results = self._get_param("MaxResults")
    start = int(self._get_param("NextToken") or 0)
    if not max_results:
        return items[start:], None
    size = int(max_results)
    if size < 1 or size > 1000:
        raise ClientError("InvalidParameterValue", f"Value ({size}) for parameter maxResults is invalid.")
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def owned_image(self: Any, ami_id: str) -> Any:
    ami = self.ec2_backend.amis.get(ami_id)
    if ami is None:
        raise ClientError("InvalidAMIID.NotFound", f"The image id '[{ami_id}]' does not exist")
    check_owner(self.ec2_backend, ami)
    return ami


# Only the owner changes an AMI (DeregisterImage, DisableImage, EnableImageDeprecation,
# ModifyImageAttribute: "Only the AMI owner can ..."; EC2 answers AuthFailure for another
# account's image). moto lets any account change any image.
def check_owner(backend: Any, ami: Any) -> None:
    if ami.owner_id != backend.account_id:
        raise ClientError("AuthFailure", f"Not authorized for image:{ami.id}")


def page_of(self: Any, items: list[Any], most: int) -> tuple[list[Any], str | None]:
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or most)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def tags_of(backend: Any, resource_id: str) -> dict[str, str]:
    return dict(backend.tags.get(resource_id, {}))


# Speed only, no behaviour: moto finds one resource's tags by scanning every tag of the region
# (describe_tags with a resource-id filter), so listing N resources costs N x (all tags): a
# 10,000-AMI DescribeImages page spent most of its seconds there. This reads the resource's
# own entry of the same tag store, in the same shape.
def _tags_of_resource(self: Any) -> list[dict[str, str]]:
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    tags = self.ec2_backend.tags.get(resource_id, {})
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    TaggedEC2Resource.get_tags = _tags_of_resource
