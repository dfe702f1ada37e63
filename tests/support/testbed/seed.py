"""Test set-up: fields of an image no API sets, and fleets made in one call."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from moto.ec2.models import amis as moto_amis
from moto.ec2.models import ec2_backends

from .common import Ami, drop_auto_snapshot, iso, snapshot_ids_of


# ---------------------------------------------------------------------------------------------
# Seeding: fields of an image that no API sets (test set-up only, never called by the functions).
# ---------------------------------------------------------------------------------------------
def seed_image(body: dict[str, Any]) -> dict[str, Any]:
    account = body.get("account_id", "123456789012")
    region = body["region"]
    ami = ec2_backends[account][region].amis[body["image_id"]]
    if "creation_date" in body:
        ami.creation_date = moto_amis.parse_timestamp(body["creation_date"]).replace(tzinfo=None)
    if "owner_id" in body:
        ami.owner_id = body["owner_id"]
    if "last_launched_time" in body:
        ami.last_launched_time = body["last_launched_time"]
    if "deregistration_protection" in body:
        ami.deregistration_protection = body["deregistration_protection"]
    if "deprecation_time" in body:
        # Deprecated then (EnableImageDeprecation refuses a time in the past, so a test that
        # needs a deprecation made days ago sets it here).
        ami.deprecation_time = iso(moto_amis.parse_timestamp(body["deprecation_time"]).replace(tzinfo=timezone.utc))
    if "state" in body:
        # A copy or creation that EC2 failed after accepting it (state `failed`, StateReason).
        ami.state = body["state"]
        ami.state_reason = {"Code": "Client.UserError", "Message": body.get("state_reason", "")}
    if "snapshot_owner_id" in body:
        for snap_id in snapshot_ids_of(ami):
            ec2_backends[account][region].snapshots[snap_id].owner_id = body["snapshot_owner_id"]
    if "snapshot_start_time" in body:
        # Its snapshots were taken then (DescribeSnapshots StartTime).
        started = moto_amis.parse_timestamp(body["snapshot_start_time"]).replace(tzinfo=None)
        for snap_id in snapshot_ids_of(ami):
            ec2_backends[account][region].snapshots[snap_id].start_time = started
    return {"image_id": ami.id}


def seed_fleet(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up for scale: `count` AMIs made from `instance_id` as CreateImage makes them
    (one snapshot per volume, tags, ages spread over `max_age_days`), straight into the
    backend, so 50,000 AMIs take seconds instead of an hour of API calls."""
    import random

    account = body.get("account_id", "123456789012")
    backend = ec2_backends[account][body["region"]]
    instance = backend.get_instance(body["instance_id"])
    rng = random.Random(body.get("seed", 42))
    now = datetime.now(timezone.utc)
    tags = body.get("tags", {})
    families = int(body.get("families", 10))
    prefix = body.get("prefix", "scale")
    made = []
    for n in range(int(body["count"])):
        ami_id = moto_amis.random_ami_id()
        ami = Ami(
            backend,
            ami_id,
            instance=instance,
            name=f"{prefix}-{n:06d}",
            description="",
            root_device_type="ebs",
            root_device_name=instance.root_device_name,
            snapshot_description=f"Created by CreateImage({instance.id}) for {ami_id}",
        )
        drop_auto_snapshot(backend, ami)
        mappings = []
        for device, block in instance.get_block_device_mapping:
            volume = backend.get_volume(block.volume_id)
            snap = backend.create_snapshot(
                volume.id, f"Created by CreateImage({instance.id}) for {ami_id}", from_ami=ami_id
            )
            mappings.append(
                {
                    "DeviceName": device,
                    "Ebs": {
                        "SnapshotId": snap.id,
                        "VolumeSize": volume.size,
                        "DeleteOnTermination": True,
                        "VolumeType": "gp3",
                        "Encrypted": False,
                    },
                }
            )
        ami._mappings = mappings
        ami.add_tags({**tags, "Family": f"f{n % families}"})
        ami.ena_support = True
        days = rng.randrange(0, int(body.get("max_age_days", 365)))
        ami.creation_date = (now - timedelta(days=days)).replace(tzinfo=None)
        backend.amis[ami_id] = ami
        made.append(ami_id)
    return {"count": len(made)}
