"""EC2's eventual consistency: what was just made is not found for a while."""

from __future__ import annotations

import re
import time
from typing import Any

import contract
from moto.ec2.models import instances as moto_instances

from .common import ClientError

# Eventual consistency ({REF}/eventual-consistency.html, "Eventual consistency in the Amazon EC2
# API": a resource just created "might not be immediately available" to describe; describing it
# by id can answer `InvalidAMIID.NotFound` / `InvalidInstanceID.NotFound` for a short while).
# For `read_after_create_seconds` after CreateImage, CopyImage, RegisterImage and
# RestoreImageFromRecycleBin (the AMI) and RunInstances (its instances), describing them by id
# answers NotFound and listing leaves them out. `POST /_testbed/clock` sets it (default 0: moto
# answers everything at once).
READ_AFTER_CREATE = {"seconds": 0.0}


UNSEEN: dict[tuple[str, str], float] = {}  # (region, id) -> monotonic time it becomes visible


_NEW_ID = {
    "CreateImage": r"<imageId>(ami-[0-9a-f]+)</imageId>",
    "CopyImage": r"<imageId>(ami-[0-9a-f]+)</imageId>",
    "RegisterImage": r"<imageId>(ami-[0-9a-f]+)</imageId>",
    "RunInstances": r"<instanceId>(i-[0-9a-f]+)</instanceId>",
}


def note_created(action: str | None, environ: dict[str, Any], body: bytes, served: list[bytes]) -> None:
    """Records what a create call made, to hide it for the read-after-create window."""
    if not action or READ_AFTER_CREATE["seconds"] <= 0:
        return
    region = contract.signing_region(environ)
    text = b"".join(served).decode("utf-8", "replace")
    if action == "RestoreImageFromRecycleBin" and "<return>true</return>" in text.lower().replace(" ", ""):
        from urllib.parse import parse_qsl

        ids = [v for k, v in parse_qsl(body.decode("utf-8", "replace")) if k == "ImageId"]
    elif action in _NEW_ID:
        ids = re.findall(_NEW_ID[action], text)
    else:
        return
    until = time.monotonic() + READ_AFTER_CREATE["seconds"]
    for resource_id in ids:
        UNSEEN[(region, resource_id)] = until


def unseen(region: str) -> set[str]:
    now = time.monotonic()
    for key in [k for k, until in UNSEEN.items() if until <= now]:
        del UNSEEN[key]
    return {rid for (reg, rid) in UNSEEN if reg == region}


def clock(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: the read-after-create window (`read_after_create_seconds`); 0 also ends
    every window now."""
    READ_AFTER_CREATE["seconds"] = float(body.get("read_after_create_seconds", READ_AFTER_CREATE["seconds"]))
    if READ_AFTER_CREATE["seconds"] <= 0:
        UNSEEN.clear()
    return {"read_after_create_seconds": READ_AFTER_CREATE["seconds"]}


_moto_reservations_by_ids = moto_instances.InstanceBackend.get_reservations_by_instance_ids


_moto_describe_reservations = moto_instances.InstanceBackend.describe_instances


def reservations_by_ids(self: Any, instance_ids: list[str], filters: Any = None) -> Any:
    hidden = unseen(self.region_name) & set(instance_ids)
    if hidden:
        raise ClientError("InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(sorted(hidden))}' do not exist")
    return _moto_reservations_by_ids(self, instance_ids, filters=filters)


def describe_reservations(self: Any, filters: Any = None) -> Any:
    hidden = unseen(self.region_name)
    found = _moto_describe_reservations(self, filters=filters)
    return [r for r in found if not hidden or any(i.id not in hidden for i in r.instances)]


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    moto_instances.InstanceBackend.get_reservations_by_instance_ids = reservations_by_ids
    moto_instances.InstanceBackend.describe_instances = describe_reservations
