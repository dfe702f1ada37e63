"""SSM Parameter Store: `aws:ec2:image` parameters are validated asynchronously."""

from __future__ import annotations

import json
import time
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.ssm.responses import SimpleSystemManagerResponse

from . import accounts

# PutParameter with DataType `aws:ec2:image` (SSM API reference, PutParameter; SSM User Guide,
# "Native parameter support for Amazon Machine Image IDs"): "The aws:ec2:image value is validated
# asynchronously, and the PutParameter call returns before the validation is complete. If you
# submit an invalid AMI value, the PutParameter operation will return success, but the
# asynchronous validation will fail and the parameter will not be created or updated." moto stores
# any value at once. Here:
# - a value that is no AMI the account can describe in the parameter's region is answered with a
#   version and never stored;
# - a valid one becomes the parameter's value only when SSM's validation is done, after
#   `validation_seconds` on SSM's clock (`POST /_testbed/ssm`; 0 by default, so it is at once):
#   until then every read answers the version before it, and a second update of the parameter is
#   refused with TooManyUpdates ("There are concurrent updates for a resource that supports one
#   update at a time.");
# - a parameter never changes to or from `aws:ec2:image` (User Guide, "Parameter data types in
#   Parameter Store": "You can't change a parameter to or from either of these data types"):
#   ValidationException.
_moto_put_parameter = SimpleSystemManagerResponse.put_parameter


SSM_CLOCK: dict[str, float] = {"validation_seconds": 0.0, "advanced_seconds": 0.0}


#: (account, region, name) → the update SSM is validating: when it is done, and its request.
SSM_VALIDATING: dict[tuple[str, str, str], dict[str, Any]] = {}


FIXED_DATA_TYPES = ("aws:ec2:image", "aws:ssm:integration")


def _ssm_now() -> float:
    return time.time() + SSM_CLOCK["advanced_seconds"]


def settle_parameters() -> None:
    """Stores each update whose validation is done, as SSM does when it ends."""
    from moto.ssm.models import ssm_backends

    for key, pending in list(SSM_VALIDATING.items()):
        if pending["done_at"] > _ssm_now():
            continue
        del SSM_VALIDATING[key]
        account, region, name = key
        r = pending["request"]
        ssm_backends[account][region].put_parameter(
            name,
            r.get("Description"),
            r["Value"],
            r.get("Type"),
            r.get("AllowedPattern"),
            r.get("KeyId"),
            bool(r.get("Overwrite")),
            r.get("Tags"),
            "aws:ec2:image",
            tier=r.get("Tier"),
            policies=r.get("Policies"),
        )


def describable(account: str, region: str, image_id: str) -> Any:
    """The AMI `account` can describe in `region`: its own, or one another account shared with
    it (launch permission, or public)."""
    own = ec2_backends[account][region].amis.get(image_id)
    if own is not None:
        return own
    for owner in list(ec2_backends.keys()):
        ami = ec2_backends[owner][region].amis.get(image_id) if owner != account else None
        if ami is not None and accounts.launchable_by(ami, account):
            return ami
    return None


def put_parameter(self: Any) -> ActionResult:
    from moto.ssm.exceptions import SSMException, ValidationException

    settle_parameters()
    name = self._get_param("Name")
    data_type = self._get_param("DataType", "text")
    key = (self.current_account, self.region, name)
    try:
        existing = self.ssm_backend.get_parameter(name)
    except Exception:  # noqa: BLE001 (moto raises ParameterNotFound for a new one)
        existing = None
    if (
        existing is not None
        and data_type != existing.data_type
        and (data_type in FIXED_DATA_TYPES or existing.data_type in FIXED_DATA_TYPES)
    ):
        raise ValidationException(
            f"Parameter {name} has data type {existing.data_type}: a parameter can't be changed to or from "
            f"data type {data_type}"
        )
    if key in SSM_VALIDATING:
        raise SSMException(
            "TooManyUpdates", "There are concurrent updates for a resource that supports one update at a time."
        )
    if data_type != "aws:ec2:image":
        return _moto_put_parameter(self)
    current = existing.version if existing is not None else 0
    ami = describable(self.current_account, self.region, self._get_param("Value"))
    if ami is None or ami.state not in ("available", "pending"):
        return ActionResult({"Version": current + 1, "Tier": "Standard"})
    if SSM_CLOCK["validation_seconds"] <= 0:
        return _moto_put_parameter(self)
    SSM_VALIDATING[key] = {
        "done_at": _ssm_now() + SSM_CLOCK["validation_seconds"],
        "request": json.loads(self.body or "{}"),
    }
    return ActionResult({"Version": current + 1, "Tier": "Standard"})


def ssm(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: how long SSM validates an `aws:ec2:image` update (`validation_seconds`), and
    moving SSM's clock ahead (`advance_seconds`), which stores the updates validated by then;
    answers the names still being validated."""
    if "validation_seconds" in body:
        SSM_CLOCK["validation_seconds"] = float(body["validation_seconds"])
    SSM_CLOCK["advanced_seconds"] += float(body.get("advance_seconds", 0))
    settle_parameters()
    return {"validating": sorted(name for (_, _, name) in SSM_VALIDATING)}


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    SimpleSystemManagerResponse.put_parameter = put_parameter
