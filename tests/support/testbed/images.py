"""AMIs: CreateImage, RegisterImage, DescribeImages, DeregisterImage, deprecation,
deregistration protection, ModifyImageAttribute and CopyImage, as the EC2 API reference documents them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models import amis as moto_amis
from moto.ec2.models import ec2_backends
from moto.ec2.models import elastic_block_store as moto_ebs
from moto.ec2.models.elastic_block_store import Snapshot
from moto.ec2.responses.amis import AmisResponse

from .common import (
    Ami,
    ClientError,
    atomic,
    check_owner,
    check_tag_types,
    check_unique_name,
    drop_auto_snapshot,
    iso,
    one_page,
    owned_image,
    snapshot_ids_of,
    tags_for,
)
from .consistency import unseen
from .recycle_bin import bin_image, bin_snapshot
from .sharing import check_public


# CreateImage ({REF}/API_CreateImage.html): the image gets one snapshot per EBS volume of the
# instance, and TagSpecifications with ResourceType=snapshot tag those snapshots. A name already
# used by an image of the account is refused with InvalidAMIName.Duplicate.
def create_image(self: Any) -> ActionResult:
    backend = self.ec2_backend
    name = self._get_param("Name")
    instance_id = self._get_param("InstanceId")
    tag_specs = self._get_param("TagSpecifications", [])
    self.error_on_dryrun()
    check_tag_types(tag_specs)
    instance = backend.get_instance(instance_id)
    check_unique_name(backend, name)
    ami_id = moto_amis.random_ami_id()
    ami = Ami(
        backend,
        ami_id,
        instance=instance,
        name=name,
        description=self._get_param("Description", ""),
        root_device_type="ebs",
        root_device_name=instance.root_device_name,
        snapshot_description=f"Created by CreateImage({instance_id}) for {ami_id}",
    )
    drop_auto_snapshot(backend, ami)
    snap_tags = tags_for(tag_specs, "snapshot")
    mappings = []
    for device, block in instance.get_block_device_mapping:
        volume = backend.get_volume(block.volume_id)
        snap = backend.create_snapshot(
            volume.id, f"Created by CreateImage({instance_id}) for {ami_id}", from_ami=ami_id
        )
        snap.add_tags(snap_tags)
        mappings.append(
            {
                "DeviceName": device,
                "Ebs": {
                    "SnapshotId": snap.id,
                    "VolumeSize": volume.size,
                    "DeleteOnTermination": bool(getattr(block, "delete_on_termination", True)),
                    "VolumeType": volume.volume_type or "gp3",
                    "Encrypted": bool(volume.encrypted),
                },
            }
        )
    ami._mappings = mappings
    ami.add_tags(tags_for(tag_specs, "image"))
    ami.ena_support = True
    # Its source ({REF}/API_Image.html, `sourceImageId`: "The ID of the source AMI from which
    # the AMI was created", shown for AMIs made by CreateImage, CopyImage or
    # CreateRestoreImageTask; EC2 User Guide, "Identify the source AMI used to create a new
    # AMI"): for CreateImage, the AMI the instance was launched from, in the instance's region.
    # moto records none.
    ami.source_image_id = instance.image_id
    ami.source_image_region = backend.region_name
    backend.amis[ami_id] = ami
    return ActionResult({"ImageId": ami_id})


# RegisterImage ({REF}/API_RegisterImage.html): the image uses the snapshots its block device
# mappings name, with the requested root device name, architecture, ENA support, boot mode and
# virtualization type; TagSpecifications tag the image. Unknown snapshots are refused.
def register_image(self: Any) -> ActionResult:
    backend = self.ec2_backend
    name = self._get_param("Name")
    tag_specs = self._get_param("TagSpecifications", [])
    self.error_on_dryrun()
    check_tag_types(tag_specs)
    raw = self._get_param("BlockDeviceMappings", [])
    if not raw:
        # Without mappings real EC2 needs an S3 manifest (instance store); keep moto's default.
        check_unique_name(backend, name)
        ami = backend.register_image(name, self._get_param("Description", ""))
        ami.add_tags(tags_for(tag_specs, "image"))
        return ActionResult({"ImageId": ami.id})
    mappings = []
    for m in raw:
        ebs = m.get("Ebs") or {}
        snap_id = ebs.get("SnapshotId")
        entry: dict[str, Any] = {"DeviceName": m.get("DeviceName")}
        if snap_id:
            snap = backend.snapshots.get(snap_id)
            if snap is None:
                raise ClientError("InvalidSnapshot.NotFound", f"The snapshot '{snap_id}' does not exist.")
            entry["Ebs"] = {
                "SnapshotId": snap_id,
                "VolumeSize": int(ebs.get("VolumeSize") or snap.volume_size),
                "DeleteOnTermination": str(ebs.get("DeleteOnTermination", "true")).lower() == "true",
                "VolumeType": ebs.get("VolumeType") or "gp2",
                "Encrypted": bool(snap.encrypted),
            }
        mappings.append(entry)
    check_unique_name(backend, name)
    ami_id = moto_amis.random_ami_id()
    ami = Ami(
        backend,
        ami_id,
        name=name,
        description=self._get_param("Description", ""),
        architecture=self._get_param("Architecture") or "x86_64",
        virtualization_type=self._get_param("VirtualizationType") or "hvm",
        root_device_type="ebs",
        root_device_name=self._get_param("RootDeviceName") or "/dev/sda1",
        boot_mode=self._get_param("BootMode"),
    )
    drop_auto_snapshot(backend, ami)
    ami._mappings = mappings
    ami.ena_support = str(self._get_param("EnaSupport", "false")).lower() == "true"
    ami.add_tags(tags_for(tag_specs, "image"))
    backend.amis[ami_id] = ami
    return ActionResult({"ImageId": ami_id})


# DescribeImages ({REF}/API_DescribeImages.html): MaxResults (1-1000) pages the result with
# NextToken; disabled AMIs are listed only with IncludeDisabled=true.
def describe_images(self: Any) -> ActionResult:
    self.error_on_dryrun()
    hidden = unseen(self.ec2_backend.region_name)
    asked = set(self._get_param("ImageIds", []))
    if hidden & asked:
        raise ClientError(
            "InvalidAMIID.NotFound", f"The image id '[{', '.join(sorted(hidden & asked))}]' does not exist"
        )
    images = self.ec2_backend.describe_images(
        ami_ids=self._get_param("ImageIds", []),
        filters=self._filters_from_querystring(),
        exec_users=self._get_param("ExecutableUsers", []),
        owners=self._get_param("Owners", []),
    )
    if str(self._get_param("IncludeDisabled", "false")).lower() != "true":
        images = [i for i in images if i.state != "disabled"]
    images = [i for i in images if i.id not in hidden]
    page, token = one_page(self, sorted(images, key=lambda i: i.id))
    result: dict[str, Any] = {"Images": page}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


# GetImageAncestry ({REF}/API_GetImageAncestry.html, API_ImageAncestryEntry.html): "the
# ancestry chain of the specified AMI, tracing its lineage back to the root AMI", one entry per
# AMI "from the specified AMI to the root AMI", each with its CreationDate, ImageId,
# ImageOwnerAlias and its parent (SourceImageId, SourceImageRegion). The chain follows each
# AMI's source into the source's region and ends at an AMI with no source. What an ancestor EC2
# no longer describes gives is not documented: here the chain ends at the last AMI it can
# describe (whose entry still names that parent). An unknown AMI is InvalidAMIID.NotFound. moto
# does not implement the call.
ANCESTRY_GUARD = 1000


def get_image_ancestry(self: Any) -> ActionResult:
    image_id = self._get_param("ImageId")
    self.error_on_dryrun()
    account, region = self.current_account, self.ec2_backend.region_name
    ami = self.ec2_backend.amis.get(image_id)
    if ami is None or image_id in unseen(region):
        raise ClientError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
    entries: list[dict[str, Any]] = []
    while ami is not None and len(entries) < ANCESTRY_GUARD:  # a guard against records that loop
        entry = {"ImageId": ami.id, "CreationDate": ami.creation_date, "ImageOwnerAlias": ami.owner_alias}
        source, source_region = getattr(ami, "source_image_id", None), getattr(ami, "source_image_region", None)
        if source and source_region:
            entry.update({"SourceImageId": source, "SourceImageRegion": source_region})
        entries.append({k: v for k, v in entry.items() if v is not None})
        if not (source and source_region):
            break
        ami = ec2_backends[account][source_region].amis.get(source)
    return ActionResult({"ImageAncestryEntries": entries})


# DeregisterImage ({REF}/API_DeregisterImage.html): DeleteAssociatedSnapshots deletes the
# image's snapshots, except one that another AMI also uses; the response lists each result.
# An image with deregistration protection enabled is refused.
def deregister_image(self: Any) -> ActionResult:
    backend = self.ec2_backend
    ami_id = self._get_param("ImageId")
    delete_snaps = str(self._get_param("DeleteAssociatedSnapshots", "false")).lower() == "true"
    self.error_on_dryrun()
    ami = backend.amis.get(ami_id)
    if ami is not None:
        check_owner(backend, ami)
    if ami is not None and _protected(ami):
        raise ClientError("InvalidParameterValue", f"Deregistration protection is enabled for image {ami_id}.")
    snaps = snapshot_ids_of(ami) if ami is not None else []
    if ami is not None:
        bin_image(backend, ami)
    backend.deregister_image(ami_id)
    results = []
    if delete_snaps:
        mine = set(snaps)
        still_used = {s for other in backend.amis.values() for s in snapshot_ids_of(other) if s in mine}
        for snap_id in snaps:
            snap = backend.snapshots.get(snap_id)
            if snap is None or snap_id in still_used or snap.owner_id != backend.account_id:
                continue
            bin_snapshot(backend, snap)
            backend.snapshots.pop(snap_id)
            results.append({"SnapshotId": snap_id, "ReturnCode": "success"})
    result: dict[str, Any] = {"Return": True}
    if delete_snaps:
        result["DeleteSnapshotResults"] = results
    return ActionResult(result)


# EnableImageDeprecation / DisableImageDeprecation ({REF}/API_EnableImageDeprecation.html):
# set and clear the image's DeprecationTime, which DescribeImages then reports. DeprecateAt
# cannot be in the past.
def enable_image_deprecation(self: Any) -> ActionResult:
    ami_id = self._get_param("ImageId")
    deprecate_at = self._get_param("DeprecateAt")
    self.error_on_dryrun()
    ami = owned_image(self, ami_id)
    when = deprecate_at if isinstance(deprecate_at, datetime) else moto_amis.parse_timestamp(deprecate_at)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when < datetime.now(timezone.utc).replace(second=0, microsecond=0):
        raise ClientError("InvalidParameterValue", "DeprecateAt cannot be in the past.")
    ami.deprecation_time = iso(when)
    return ActionResult({"Return": True})


def disable_image_deprecation(self: Any) -> ActionResult:
    ami = owned_image(self, self._get_param("ImageId"))
    self.error_on_dryrun()
    ami.deprecation_time = None
    return ActionResult({"Return": True})


# ModifyImageAttribute ({REF}/API_ModifyImageAttribute.html): "You can't modify the attributes
# of a disabled AMI" - refused for a disabled image.
_moto_modify_image_attribute = AmisResponse.modify_image_attribute


def modify_image_attribute(self: Any) -> Any:
    ami = self.ec2_backend.amis.get(self._get_param("ImageId"))
    if ami is not None:
        check_owner(self.ec2_backend, ami)
    if ami is not None and ami.state == "disabled":
        raise ClientError("InvalidParameterValue", f"The image {ami.id} is disabled.")
    if ami is not None:
        check_public(self, ami)
    return _moto_modify_image_attribute(self)


# CopyImage ({REF}/API_CopyImage.html), called in the destination region: a ClientToken already
# used returns the same copy ("Ensuring idempotency"); the copy's snapshots are copies of the
# source's (encrypted with KmsKeyId, or the region's default EBS key, when Encrypted is true);
# TagSpecifications tag the copy and its snapshots; CopyImageTags copies the source's tags; the
# copy reports SourceImageId and SourceImageRegion; a name in use is InvalidAMIName.Duplicate.
CLIENT_TOKENS: dict[tuple[str, str, str], tuple[str, str]] = {}


# CopyImage of an AMI another account shared ({REF}/API_CopyImage.html; EC2 User Guide, "Copy
# an AMI"): the caller needs launch permission on the AMI and "read permissions for the storage
# that backs the AMI" (createVolumePermission on each snapshot); the copy is the caller's. moto
# looks for the source in the caller's own account only.
def copy_source(account: str, region: str, image_id: str) -> tuple[Any, Any]:
    """The backend and AMI CopyImage copies from, for a caller of `account`."""
    own = ec2_backends[account][region]
    if image_id in own.amis:
        return own, own.amis[image_id]
    for owner in list(ec2_backends.keys()):
        backend = ec2_backends[owner][region]
        ami = backend.amis.get(image_id)
        if ami is None or owner == account:
            continue
        if not (ami.is_public or {"UserId": account} in ami.launch_permissions):
            break
        for m in ami.block_device_mappings:
            snap = backend.snapshots.get((m.get("Ebs") or {}).get("SnapshotId", ""))
            if snap is not None and account not in snap.create_volume_permission_userids:
                raise ClientError(
                    "AuthFailure",
                    f"Not authorized for snapshot {snap.id} of {image_id}: the owner grants no createVolumePermission to {account}",
                )
        return backend, ami
    raise ClientError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")


def copy_image(self: Any) -> ActionResult:
    backend = self.ec2_backend
    source_id = self._get_param("SourceImageId")
    source_region = self._get_param("SourceRegion")
    name = self._get_param("Name")
    token = self._get_param("ClientToken")
    encrypted = str(self._get_param("Encrypted", "false")).lower() == "true"
    kms_key_id = self._get_param("KmsKeyId")
    tag_specs = self._get_param("TagSpecifications", [])
    copy_tags = str(self._get_param("CopyImageTags", "false")).lower() == "true"
    self.error_on_dryrun()
    check_tag_types(tag_specs)
    key = (backend.account_id, backend.region_name, token or "")
    # "IdempotentParameterMismatch: ... Do not reuse a client token with different requests,
    # unless the requests are identical" ({REF}/errors-overview.html).
    request = json.dumps(
        [source_id, source_region, name, encrypted, kms_key_id, tag_specs, copy_tags], sort_keys=True, default=str
    )
    if token and key in CLIENT_TOKENS:
        image_id, seen = CLIENT_TOKENS[key]
        if seen != request:
            raise ClientError(
                "IdempotentParameterMismatch", f"The client token {token} was used for a different CopyImage request."
            )
        return ActionResult({"ImageId": image_id})
    source_backend, source = copy_source(backend.account_id, source_region, source_id)
    if source.state != "available":
        raise ClientError("IncorrectState", f"The image {source_id} is {source.state}, not available")
    check_unique_name(backend, name)
    ami_id = moto_amis.random_ami_id()
    ami = Ami(
        backend,
        ami_id,
        source_ami=source,
        name=name,
        description=self._get_param("Description"),
        root_device_type=source.root_device_type,
        root_device_name=source.root_device_name,
        boot_mode=source.boot_mode,
    )
    drop_auto_snapshot(backend, ami)
    if encrypted and not kms_key_id:
        kms_key_id = backend.default_kms_key_id or backend._create_default_encryption_key()
    mappings = []
    for m in source.block_device_mappings:
        ebs = dict(m.get("Ebs") or {})
        snap_id = ebs.get("SnapshotId")
        if snap_id:
            src_snap = source_backend.snapshots[snap_id]
            snap = Snapshot(
                backend,
                moto_ebs.random_snapshot_id(),
                volume=src_snap.volume,
                description=f"Copied for DestinationAmi {ami_id} from SourceAmi {source_id} for SourceSnapshot {snap_id}",
                encrypted=src_snap.encrypted,
                kms_key_id=kms_key_id if (encrypted or src_snap.encrypted) else None,
            )
            backend.snapshots[snap.id] = snap
            snap.encrypted = encrypted or src_snap.encrypted
            snap.from_ami = ami_id
            snap.add_tags(tags_for(tag_specs, "snapshot"))
            ebs["SnapshotId"] = snap.id
            ebs["Encrypted"] = snap.encrypted
            if snap.encrypted and snap.kms_key_id:
                ebs["KmsKeyId"] = snap.kms_key_id
        mappings.append({"DeviceName": m.get("DeviceName"), "Ebs": ebs})
    ami._mappings = mappings
    ami.source_image_id = source_id
    ami.source_image_region = source_region
    ami.ena_support = getattr(source, "ena_support", None)
    if copy_tags:
        ami.add_tags({t["key"]: t["value"] for t in source.get_tags()})
    ami.add_tags(tags_for(tag_specs, "image"))
    backend.amis[ami_id] = ami
    if token:
        CLIENT_TOKENS[key] = (ami_id, request)
    return ActionResult({"ImageId": ami_id})


# Deregistration protection ({REF}/API_EnableImageDeregistrationProtection.html,
# API_DisableImageDeregistrationProtection.html; EC2 User Guide "Protect an Amazon EC2 AMI from
# deregistration"): while it is on, nobody can deregister the AMI. Enabled WithCooldown, it keeps
# refusing deregistration for 24 hours after it is disabled. DescribeImages shows
# `enabled-with-cooldown`, `enabled-without-cooldown`, `disabled`, and during the cooldown
# `disabled-until <time>` (the form the AWS CLI shows; the API reference gives no list). Only
# the owner changes it. moto implements neither call.
def _protected(ami: Any) -> bool:
    state = getattr(ami, "deregistration_protection", "disabled") or "disabled"
    if state.startswith("disabled-until "):
        until = moto_amis.parse_timestamp(state[len("disabled-until ") :]).replace(tzinfo=timezone.utc)
        if datetime.now(timezone.utc) >= until:
            ami.deregistration_protection = "disabled"
            return False
        return True
    return state != "disabled"


def enable_image_deregistration_protection(self: Any) -> ActionResult:
    ami = owned_image(self, self._get_param("ImageId"))
    self.error_on_dryrun()
    cooldown = str(self._get_param("WithCooldown", "false")).lower() == "true"
    ami.deregistration_protection = "enabled-with-cooldown" if cooldown else "enabled-without-cooldown"
    return ActionResult({"Return": ami.deregistration_protection})


def disable_image_deregistration_protection(self: Any) -> ActionResult:

    ami = owned_image(self, self._get_param("ImageId"))
    self.error_on_dryrun()
    if getattr(ami, "deregistration_protection", "disabled") == "enabled-with-cooldown":
        until = datetime.now(timezone.utc) + timedelta(hours=24)
        ami.deregistration_protection = f"disabled-until {iso(until)}"
    elif not str(ami.deregistration_protection).startswith("disabled-until"):
        ami.deregistration_protection = "disabled"
    return ActionResult({"Return": "disabled"})


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    AmisResponse.copy_image = atomic(copy_image)
    AmisResponse.enable_image_deregistration_protection = enable_image_deregistration_protection
    AmisResponse.disable_image_deregistration_protection = disable_image_deregistration_protection
    AmisResponse.create_image = atomic(create_image)
    AmisResponse.register_image = atomic(register_image)
    AmisResponse.describe_images = describe_images
    AmisResponse.deregister_image = deregister_image
    AmisResponse.get_image_ancestry = get_image_ancestry
    AmisResponse.enable_image_deprecation = enable_image_deprecation
    AmisResponse.disable_image_deprecation = disable_image_deprecation
    AmisResponse.modify_image_attribute = modify_image_attribute
    for attr in ("deprecation_time", "last_launched_time", "ena_support", "source_image_id", "source_image_region"):
        if not hasattr(Ami, attr):
            setattr(Ami, attr, None)
    Ami.deregistration_protection = "disabled"
