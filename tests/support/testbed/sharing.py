"""Sharing: DisableImage removes launch permissions; block public access for AMIs."""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models import amis as moto_amis
from moto.ec2.responses.amis import AmisResponse

from .common import ClientError, check_owner

# DisableImage ({REF}/API_DisableImage.html): "Sets the AMI state to disabled and removes all
# launch permissions from the AMI ... If an AMI was public or previously shared, it is made
# private." moto keeps them.
_moto_disable_image = moto_amis.AmiBackend.disable_image


def disable_image(self: Any, ami_id: str) -> None:
    if ami_id in self.amis:
        check_owner(self, self.amis[ami_id])
    _moto_disable_image(self, ami_id)
    self.amis[ami_id].launch_permissions = []


# Block public access for AMIs ({REF}/API_GetImageBlockPublicAccessState.html,
# EnableImageBlockPublicAccess, DisableImageBlockPublicAccess; EC2 User Guide, "Understand
# shared AMI usage": "To publicly share an AMI, block public access for AMIs must be disabled",
# and "If your AMI includes ... encrypted volumes ... or product codes, you can't make it
# public"). State per account and region: `unblocked` (the default for accounts that never
# shared publicly, as here) or `block-new-sharing`. moto implements none of it.
BLOCK_PUBLIC: dict[tuple[str, str], str] = {}


def get_image_block_public_access_state(self: Any) -> ActionResult:
    backend = self.ec2_backend
    state = BLOCK_PUBLIC.get((backend.account_id, backend.region_name), "unblocked")
    return ActionResult({"ImageBlockPublicAccessState": state, "ManagedBy": "account"})


def enable_image_block_public_access(self: Any) -> ActionResult:
    backend = self.ec2_backend
    state = self._get_param("ImageBlockPublicAccessState")
    if state != "block-new-sharing":
        raise ClientError("InvalidParameterValue", f"{state} is not block-new-sharing")
    BLOCK_PUBLIC[(backend.account_id, backend.region_name)] = state
    return ActionResult({"ImageBlockPublicAccessState": state})


def disable_image_block_public_access(self: Any) -> ActionResult:
    backend = self.ec2_backend
    BLOCK_PUBLIC[(backend.account_id, backend.region_name)] = "unblocked"
    return ActionResult({"ImageBlockPublicAccessState": "unblocked"})


def check_public(self: Any, ami: Any) -> None:
    """Refuses to make `ami` public as EC2 does (see above)."""
    adds = self._get_param("LaunchPermission", {}).get("Add", []) or []
    if self._get_param("OperationType") == "add":
        adds = adds + [{"Group": g} for g in self._get_param("UserGroups", [])]
    if not any(a.get("Group") == "all" for a in adds):
        return
    backend = self.ec2_backend
    if BLOCK_PUBLIC.get((backend.account_id, backend.region_name)) == "block-new-sharing":
        raise ClientError(
            "OperationNotPermitted",
            "You can't publicly share this image because block public access for AMIs is enabled for this account.",
        )
    if any((m.get("Ebs") or {}).get("Encrypted") for m in ami.block_device_mappings):
        raise ClientError("InvalidParameterValue", f"Encrypted image {ami.id} cannot be made public.")
    if ami.product_codes:
        raise ClientError("InvalidParameterValue", f"Image {ami.id} has product codes and cannot be made public.")


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    moto_amis.AmiBackend.disable_image = disable_image
    AmisResponse.get_image_block_public_access_state = get_image_block_public_access_state
    AmisResponse.enable_image_block_public_access = enable_image_block_public_access
    AmisResponse.disable_image_block_public_access = disable_image_block_public_access
