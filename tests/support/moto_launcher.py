"""The local AWS test bed: moto's server, with the EC2 behaviours our safety depends on.

moto 5.2.5 departs silently from EC2 in places where this project's safety or idempotency
depends on the real behaviour (the measured list is in the product brief). This launcher runs
moto's own WSGI application in-process and patches its EC2 model so that each of those calls
behaves as the EC2 API reference documents. Every patch below cites the reference page it
follows, and `tests/tests/testbed.rs` proves each one with a test that fails against plain moto.

It also serves two routes that are not AWS, for tests only (the functions never call them):
`POST /_testbed/image` sets the fields of an image that no API can set (its CreationDate, its
owner, deregistration protection, last launch), so tests can build a fleet of any age and
ownership without waiting; `GET /_testbed/events` lists the events PutEvents accepted;
`GET /_testbed/calls` counts the API calls received, by action; `GET /_testbed/callers` lists
the IAM actions each function called (the caller is the SDK's `app/<name>` user-agent token, the
action the request's signing service and its action), and with `AMI_TESTBED_CALL_LOG` set each
new pair is also appended to that file as a JSON line (`scripts/check_iam.py` compares them
with each function's role); `POST /_testbed/faults`
answers the next N calls of an action with an EC2 error code (throttling, in-use, 500s, ...),
a slow answer (`SLOW:<ms>`), a dropped connection (`DROP`), a call that never answers (`HANG`),
or a call executed whose answer is lost (`LOSE`);
`POST /_testbed/throttle` sets token buckets that throttle as EC2's request limits do;
`POST /_testbed/usage-report` completes an AMI's usage report with the accounts that use it;
`POST /_testbed/instance` sets an instance's status checks, console output and launch time.
`GET /_testbed/signing-key` answers the ARN of the stack's HMAC key (made at the first call).
`GET /_testbed/event-outbox` answers the URL of the stack's event outbox (made at the first call).
`POST /_testbed/scheduler` moves EventBridge Scheduler's clock ahead and runs what is due.
`POST /_testbed/ssm` sets how long SSM validates an `aws:ec2:image` update, and moves its clock.

Every AWS request is first checked against the services' published API contract (`contract.py`:
botocore's service model, the data the AWS SDKs are generated from): a request that EC2 would
refuse for a missing, unknown or invalid parameter is answered with EC2's error
(MissingParameter, UnknownParameter, InvalidParameterValue) as an HTTP 400, and one that
EventBridge, KMS or SSM would refuse with their ValidationException; moto never sees it.

Usage: python moto_launcher.py [--port N] [--plain] [--no-contract]
Prints `READY <port>` on stdout once it accepts connections; stops when stdin closes (the test
process that started it ended) or on SIGTERM. `--plain` serves moto as it is (no patches, no
contract check), so the tests can show what each patch changes; `--no-contract` keeps the patches
and drops only the contract check, so a test can show a request the contract refuses is accepted
without it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("MOTO_AMIS_PATH", os.path.join(HERE, "amis.json"))

import authorize  # noqa: E402  (tests/support/authorize.py: IAM on every function's request)
import contract  # noqa: E402  (tests/support/contract.py, next to this file)
import iam_requests  # noqa: E402  (tests/support/iam_requests.py: what AWS authorizes per call)
from moto.core.responses import ActionResult, EmptyResult  # noqa: E402
from moto.ec2.exceptions import EC2ClientError  # noqa: E402
from moto.ec2.models import amis as moto_amis  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto.ec2.models import instances as moto_instances  # noqa: E402
from moto.ec2.models import launch_templates as moto_launch_templates  # noqa: E402
from moto.ec2.models.core import TaggedEC2Resource  # noqa: E402
from moto.ec2.models.elastic_block_store import EBSBackend  # noqa: E402
from moto.ec2.responses.amis import AmisResponse  # noqa: E402
from moto.ec2.responses.elastic_block_store import ElasticBlockStore  # noqa: E402
from moto.ec2.responses.general import General as GeneralResponse  # noqa: E402
from moto.ec2.responses.instances import InstanceResponse  # noqa: E402
from moto.ec2.responses.launch_templates import LaunchTemplates as LaunchTemplatesResponse  # noqa: E402
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix  # noqa: E402
from moto.events.models import EventsBackend  # noqa: E402
from moto.kms.models import KmsBackend  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.ssm.responses import SimpleSystemManagerResponse  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402
from werkzeug.wrappers import Request, Response  # noqa: E402

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


def _drop_auto_snapshot(backend: Any, ami: Any) -> None:
    """moto makes a fresh 15 GiB snapshot for every image; a patched image has real ones."""
    backend.snapshots.pop(ami.ebs_snapshot.id, None)


def _tags_for(tag_specs: list[dict[str, Any]], resource_type: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for spec in tag_specs:
        if spec.get("ResourceType") == resource_type:
            for tag in spec.get("Tags", []):
                tags[tag["Key"]] = tag.get("Value", "")
    return tags


def _check_tag_types(tag_specs: list[dict[str, Any]]) -> None:
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


def _check_unique_name(backend: Any, name: str | None) -> None:
    # CreateImage / RegisterImage / CopyImage: "InvalidAMIName.Duplicate: The specified AMI
    # name is already in use by an AMI owned by your account." ({REF}/errors-overview.html)
    if name and any(a.name == name and a.owner_id == backend.account_id for a in backend.amis.values()):
        raise ClientError("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI")


# CreateImage ({REF}/API_CreateImage.html): the image gets one snapshot per EBS volume of the
# instance, and TagSpecifications with ResourceType=snapshot tag those snapshots. A name already
# used by an image of the account is refused with InvalidAMIName.Duplicate.
def create_image(self: Any) -> ActionResult:
    backend = self.ec2_backend
    name = self._get_param("Name")
    instance_id = self._get_param("InstanceId")
    tag_specs = self._get_param("TagSpecifications", [])
    self.error_on_dryrun()
    _check_tag_types(tag_specs)
    instance = backend.get_instance(instance_id)
    _check_unique_name(backend, name)
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
    _drop_auto_snapshot(backend, ami)
    snap_tags = _tags_for(tag_specs, "snapshot")
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
    ami.add_tags(_tags_for(tag_specs, "image"))
    ami.ena_support = True
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
    _check_tag_types(tag_specs)
    raw = self._get_param("BlockDeviceMappings", [])
    if not raw:
        # Without mappings real EC2 needs an S3 manifest (instance store); keep moto's default.
        _check_unique_name(backend, name)
        ami = backend.register_image(name, self._get_param("Description", ""))
        ami.add_tags(_tags_for(tag_specs, "image"))
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
    _check_unique_name(backend, name)
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
    _drop_auto_snapshot(backend, ami)
    ami._mappings = mappings
    ami.ena_support = str(self._get_param("EnaSupport", "false")).lower() == "true"
    ami.add_tags(_tags_for(tag_specs, "image"))
    backend.amis[ami_id] = ami
    return ActionResult({"ImageId": ami_id})


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
    region = contract._signing_region(environ)
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
    page, token = _page(self, sorted(images, key=lambda i: i.id))
    result: dict[str, Any] = {"Images": page}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


# DescribeSnapshots ({REF}/API_DescribeSnapshots.html): OwnerIds (an id, `self` or `amazon`)
# limits the result to those owners; MaxResults pages it with NextToken.
def describe_snapshots(self: Any) -> ActionResult:
    backend = self.ec2_backend
    snaps = backend.describe_snapshots(
        snapshot_ids=self._get_param("SnapshotIds", []), filters=self._filters_from_querystring()
    )
    owners = self._get_param("OwnerIds", [])
    if owners:
        wanted = {backend.account_id if o == "self" else o for o in owners}
        snaps = [s for s in snaps if s.owner_id in wanted]
    page, token = _page(self, sorted(snaps, key=lambda s: s.id))
    result: dict[str, Any] = {"Snapshots": page}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


def _page(self: Any, items: list[Any]) -> tuple[list[Any], str | None]:
    max_results = self._get_param("MaxResults")
    start = int(self._get_param("NextToken") or 0)
    if not max_results:
        return items[start:], None
    size = int(max_results)
    if size < 1 or size > 1000:
        raise ClientError("InvalidParameterValue", f"Value ({size}) for parameter maxResults is invalid.")
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


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
        _check_owner(backend, ami)
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


# DeleteSnapshot ({REF}/API_DeleteSnapshot.html): "You cannot delete a snapshot of the root
# device of an EBS volume used by a registered AMI" - InvalidSnapshot.InUse for any snapshot a
# registered image (in any state, disabled included) uses, not only the one CreateImage made.
_moto_delete_snapshot = EBSBackend.delete_snapshot


def delete_snapshot(self: Any, snapshot_id: str) -> Any:
    for ami in self.amis.values():
        if snapshot_id in snapshot_ids_of(ami):
            raise ClientError("InvalidSnapshot.InUse", f"The snapshot {snapshot_id} is currently in use by {ami.id}")
    snap = self.snapshots.get(snapshot_id)
    if snap is not None:
        bin_snapshot(self, snap)
    return _moto_delete_snapshot(self, snapshot_id)


# EnableImageDeprecation / DisableImageDeprecation ({REF}/API_EnableImageDeprecation.html):
# set and clear the image's DeprecationTime, which DescribeImages then reports. DeprecateAt
# cannot be in the past.
def enable_image_deprecation(self: Any) -> ActionResult:
    ami_id = self._get_param("ImageId")
    deprecate_at = self._get_param("DeprecateAt")
    self.error_on_dryrun()
    ami = _owned_image(self, ami_id)
    when = deprecate_at if isinstance(deprecate_at, datetime) else moto_amis.parse_timestamp(deprecate_at)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when < datetime.now(timezone.utc).replace(second=0, microsecond=0):
        raise ClientError("InvalidParameterValue", "DeprecateAt cannot be in the past.")
    ami.deprecation_time = iso(when)
    return ActionResult({"Return": True})


def disable_image_deprecation(self: Any) -> ActionResult:
    ami = _owned_image(self, self._get_param("ImageId"))
    self.error_on_dryrun()
    ami.deprecation_time = None
    return ActionResult({"Return": True})


def _owned_image(self: Any, ami_id: str) -> Any:
    ami = self.ec2_backend.amis.get(ami_id)
    if ami is None:
        raise ClientError("InvalidAMIID.NotFound", f"The image id '[{ami_id}]' does not exist")
    _check_owner(self.ec2_backend, ami)
    return ami


# Only the owner changes an AMI (DeregisterImage, DisableImage, EnableImageDeprecation,
# ModifyImageAttribute: "Only the AMI owner can ..."; EC2 answers AuthFailure for another
# account's image). moto lets any account change any image.
def _check_owner(backend: Any, ami: Any) -> None:
    if ami.owner_id != backend.account_id:
        raise ClientError("AuthFailure", f"Not authorized for image:{ami.id}")


# ModifyImageAttribute ({REF}/API_ModifyImageAttribute.html): "You can't modify the attributes
# of a disabled AMI" - refused for a disabled image.
_moto_modify_image_attribute = AmisResponse.modify_image_attribute


def modify_image_attribute(self: Any) -> Any:
    ami = self.ec2_backend.amis.get(self._get_param("ImageId"))
    if ami is not None:
        _check_owner(self.ec2_backend, ami)
    if ami is not None and ami.state == "disabled":
        raise ClientError("InvalidParameterValue", f"The image {ami.id} is disabled.")
    if ami is not None:
        _check_public(self, ami)
    return _moto_modify_image_attribute(self)


# ---------------------------------------------------------------------------------------------
# Observation: the events accepted by PutEvents, so tests can read what a function announced.
# ---------------------------------------------------------------------------------------------
PUBLISHED: list[dict[str, Any]] = []
_moto_put_events = EventsBackend.put_events


def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries = _moto_put_events(self, events)
    for event, entry in zip(events, entries, strict=True):
        if not entry.get("ErrorCode"):
            PUBLISHED.append(
                {
                    "region": self.region_name,
                    "bus": event.get("EventBusName") or "default",
                    "source": event.get("Source"),
                    "detail_type": event.get("DetailType"),
                    "resources": event.get("Resources", []),
                    "detail": json.loads(event.get("Detail") or "{}"),
                }
            )
    return entries


# RunInstances ({REF}/API_RunInstances.html, and "Root device volumes" in the EC2 user guide):
# an instance launched from an instance-store-backed AMI is instance-store-backed; moto makes
# every instance EBS-backed.
_moto_instance_init = moto_instances.Instance.__init__


def instance_init(self: Any, ec2_backend: Any, image_id: str, *args: Any, **kwargs: Any) -> None:
    _moto_instance_init(self, ec2_backend, image_id, *args, **kwargs)
    ami = ec2_backend.amis.get(image_id)
    if ami is not None and ami.root_device_type == "instance-store":
        self.root_device_type = "instance-store"


# RunInstances and its volumes (EC2 User Guide, "Amazon EC2 instance root volume": "When you
# launch an Amazon EBS-backed instance, we create an Amazon EBS volume for each Amazon EBS
# snapshot referenced by the AMI"; "Preserve data when an instance is terminated": the
# DeleteOnTermination of each volume is the AMI's unless whoever launches overrides it, and
# TerminateInstances deletes only the volumes whose DeleteOnTermination is true). moto creates one
# 8 GiB root volume whatever the AMI maps, or only the mappings a request names, and reads an
# absent DeleteOnTermination as false.
_moto_run_instances_backend = moto_instances.InstanceBackend.run_instances


def _requested_mappings(self: Any) -> list[dict[str, Any]]:
    out = []
    for m in self._get_param("BlockDeviceMappings", []):
        ebs = m.get("Ebs") or {}
        given = ebs.get("DeleteOnTermination")
        out.append(
            {
                "DeviceName": m.get("DeviceName"),
                "NoDevice": m.get("NoDevice"),
                "Ebs": {
                    "SnapshotId": ebs.get("SnapshotId"),
                    "VolumeSize": ebs.get("VolumeSize"),
                    "VolumeType": ebs.get("VolumeType"),
                    "Encrypted": ebs.get("Encrypted"),
                    "KmsKeyId": ebs.get("KmsKeyId"),
                    "Iops": ebs.get("Iops"),
                    "DeleteOnTermination": None if given is None else str(given).lower() == "true",
                },
            }
        )
    return out


def run_instances_with_ami_volumes(
    self: Any, image_id: str, count: int, user_data: Any, security_group_names: Any, **kwargs: Any
) -> Any:
    ami = self.amis.get(image_id)
    ami_mappings = getattr(ami, "_mappings", None) if ami is not None else None
    if ami_mappings and not kwargs.get("launch_template"):
        requested = {m["DeviceName"]: m for m in kwargs.get("block_device_mappings") or []}
        merged = []
        for m in ami_mappings:
            ebs = dict(m.get("Ebs") or {})
            if not ebs:
                continue
            override = requested.pop(m["DeviceName"], None)
            if override is not None and override.get("NoDevice") == "":
                continue
            for key, value in ((override or {}).get("Ebs") or {}).items():
                if value is not None and key != "SnapshotId":
                    ebs[key] = value
            ebs["DeleteOnTermination"] = str(ebs.get("DeleteOnTermination", True)).lower() == "true"
            merged.append({"DeviceName": m["DeviceName"], "Ebs": ebs})
        for m in requested.values():
            # A new volume a launch adds: deleted with the instance unless it says otherwise.
            if m["Ebs"].get("DeleteOnTermination") is None:
                m["Ebs"]["DeleteOnTermination"] = True
            merged.append(m)
        kwargs["block_device_mappings"] = merged
    return _moto_run_instances_backend(self, image_id, count, user_data, security_group_names, **kwargs)


# ModifySnapshotAttribute ({REF}/API_ModifySnapshotAttribute.html): the structured
# CreateVolumePermission {Add: [...], Remove: [...]} form applies (moto honours only the flat
# OperationType + UserIds form and silently ignores this one).
_moto_modify_snapshot_attribute = ElasticBlockStore.modify_snapshot_attribute


def modify_snapshot_attribute(self: Any) -> Any:
    structured = self._get_param("CreateVolumePermission") or {}
    if not structured:
        return _moto_modify_snapshot_attribute(self)
    snapshot_id = self._get_param("SnapshotId")
    self.error_on_dryrun()
    for op, perms in (("add", structured.get("Add", [])), ("remove", structured.get("Remove", []))):
        users = [p["UserId"] for p in perms if p.get("UserId")]
        groups = [p["Group"] for p in perms if p.get("Group")]
        for user in users:
            if len(user) != 12 or not user.isdigit():
                raise ClientError("InvalidParameterValue", f"Invalid user id: {user}")
        if op == "add":
            self.ec2_backend.add_create_volume_permission(snapshot_id, user_ids=users, groups=groups)
        else:
            self.ec2_backend.remove_create_volume_permission(snapshot_id, user_ids=users, groups=groups)
    return EmptyResult()


# KMS ({KMS_REF}): keys behind the reserved `alias/aws/...` aliases (such as the default EBS
# key alias/aws/ebs) are AWS managed keys: DescribeKey reports KeyManager=AWS.
KMS_REF = "https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#aws-managed-key"
_moto_create_alias = KmsBackend.create_alias


def create_alias(self: Any, target_key_id: str, alias_name: str) -> Any:
    alias = _moto_create_alias(self, target_key_id, alias_name)
    if alias_name.startswith("alias/aws/"):
        self.keys[self.get_key_id(target_key_id)].key_manager = "AWS"
    return alias


# CreateSnapshot ({REF}/API_CreateSnapshot.html): "Snapshots that are taken from encrypted
# volumes are automatically encrypted" with the volume's KMS key, which DescribeSnapshots
# reports as KmsKeyId; moto drops the key.
_moto_create_snapshot = EBSBackend.create_snapshot


def create_snapshot(self: Any, volume_id: str, *args: Any, **kwargs: Any) -> Any:
    snapshot = _moto_create_snapshot(self, volume_id, *args, **kwargs)
    volume = self.get_volume(volume_id)
    if volume.encrypted and not snapshot.kms_key_id:
        snapshot.kms_key_id = volume.kms_key_id
    return snapshot


# CopyImage ({REF}/API_CopyImage.html), called in the destination region: a ClientToken already
# used returns the same copy ("Ensuring idempotency"); the copy's snapshots are copies of the
# source's (encrypted with KmsKeyId, or the region's default EBS key, when Encrypted is true);
# TagSpecifications tag the copy and its snapshots; CopyImageTags copies the source's tags; the
# copy reports SourceImageId and SourceImageRegion; a name in use is InvalidAMIName.Duplicate.
CLIENT_TOKENS: dict[tuple[str, str, str], tuple[str, str]] = {}


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
    _check_tag_types(tag_specs)
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
    source_backend = ec2_backends[backend.account_id][source_region]
    source = source_backend.amis.get(source_id)
    if source is None:
        raise ClientError("InvalidAMIID.NotFound", f"The image id '[{source_id}]' does not exist")
    if source.state != "available":
        raise ClientError("IncorrectState", f"The image {source_id} is {source.state}, not available")
    _check_unique_name(backend, name)
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
    _drop_auto_snapshot(backend, ami)
    if encrypted and not kms_key_id:
        kms_key_id = backend.default_kms_key_id or backend._create_default_encryption_key()
    mappings = []
    for m in source.block_device_mappings:
        ebs = dict(m.get("Ebs") or {})
        snap_id = ebs.get("SnapshotId")
        if snap_id:
            src_snap = source_backend.snapshots[snap_id]
            snap = backend.copy_snapshot(
                snap_id,
                source_region,
                f"Copied for DestinationAmi {ami_id} from SourceAmi {source_id} for SourceSnapshot {snap_id}",
                kms_key_id if (encrypted or src_snap.encrypted) else None,
            )
            snap.encrypted = encrypted or src_snap.encrypted
            snap.from_ami = ami_id
            snap.add_tags(_tags_for(tag_specs, "snapshot"))
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
    ami.add_tags(_tags_for(tag_specs, "image"))
    backend.amis[ami_id] = ami
    if token:
        CLIENT_TOKENS[key] = (ami_id, request)
    return ActionResult({"ImageId": ami_id})


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
            named = {_resolved(backend, v.data.get("ImageId")) for v in template.versions[-depth:]}
            for image in sorted(i for i in named if i in ids):
                arn = f"arn:aws:ec2:{region}:{account}:launch-template/{template.id}"
                refs.append({"ImageId": image, "ResourceType": "ec2:LaunchTemplate", "Arn": arn})
    if "ssm:Parameter" in kinds:
        from moto.ssm.models import ssm_backends

        for name, versions in list(ssm_backends[account][region]._parameters.items()):
            if versions and versions[-1].value in ids:
                arn = f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"
                refs.append({"ImageId": versions[-1].value, "ResourceType": "ssm:Parameter", "Arn": arn})
    return ActionResult({"ImageReferences": refs})


def _resolved(backend: Any, image_id: str | None) -> str | None:
    """The AMI behind a launch template's `resolve:ssm:<parameter>` ImageId (else the id)."""
    if not image_id or not image_id.startswith("resolve:ssm:"):
        return image_id
    from moto.ssm.models import ssm_backends

    name = image_id[len("resolve:ssm:") :].split(":")[0]
    versions = ssm_backends[backend.account_id][backend.region_name]._parameters.get(name)
    return versions[-1].value if versions else image_id


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
    page, token = _page_of(self, found, 200)
    out = []
    for t, v in page:
        data = dict(v.data)
        if resolve and data.get("ImageId"):
            data["ImageId"] = _resolved(backend, data["ImageId"])
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


def _page_of(self: Any, items: list[Any], most: int) -> tuple[list[Any], str | None]:
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or most)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


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


# DisableImage ({REF}/API_DisableImage.html): "Sets the AMI state to disabled and removes all
# launch permissions from the AMI ... If an AMI was public or previously shared, it is made
# private." moto keeps them.
_moto_disable_image = moto_amis.AmiBackend.disable_image


def disable_image(self: Any, ami_id: str) -> None:
    if ami_id in self.amis:
        _check_owner(self, self.amis[ami_id])
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


def _check_public(self: Any, ami: Any) -> None:
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
    ami = _owned_image(self, self._get_param("ImageId"))
    self.error_on_dryrun()
    cooldown = str(self._get_param("WithCooldown", "false")).lower() == "true"
    ami.deregistration_protection = "enabled-with-cooldown" if cooldown else "enabled-without-cooldown"
    return ActionResult({"Return": ami.deregistration_protection})


def disable_image_deregistration_protection(self: Any) -> ActionResult:
    from datetime import timedelta

    ami = _owned_image(self, self._get_param("ImageId"))
    self.error_on_dryrun()
    if getattr(ami, "deregistration_protection", "disabled") == "enabled-with-cooldown":
        until = datetime.now(timezone.utc) + timedelta(hours=24)
        ami.deregistration_protection = f"disabled-until {iso(until)}"
    elif not str(ami.deregistration_protection).startswith("disabled-until"):
        ami.deregistration_protection = "disabled"
    return ActionResult({"Return": "disabled"})


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


def _tags_of(backend: Any, resource_id: str) -> dict[str, str]:
    return dict(backend.tags.get(resource_id, {}))


def _to_bin(
    store: dict[tuple[str, str], dict[str, Any]], kind: str, backend: Any, resource_id: str, entry: dict[str, Any]
) -> None:
    """Keeps a resource that is being removed in the bin, when a rule of `kind` retains it."""
    from datetime import timedelta

    tags = _tags_of(backend, resource_id)
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
    page, token = _page_of(self, rows, 1000)
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
    page, token = _page_of(self, rows, 1000)
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

    region = contract._signing_region(environ)
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
    from datetime import timedelta

    backend = self.ec2_backend
    self.error_on_dryrun()
    ami = _owned_image(self, self._get_param("ImageId"))
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
    page, token = _page_of(self, _usage_reports_in(self), 1000)
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
    page, token = _page_of(self, entries, 1000)
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
    from datetime import timedelta

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
    from datetime import timedelta

    if "since" not in entry:
        return True
    since = moto_amis.parse_timestamp(entry["since"]).replace(tzinfo=timezone.utc)
    lag = timedelta(hours=USAGE_LAG_HOURS.get(entry["resource_type"], 0))
    return since <= report["CreationTime"] - lag


# ---------------------------------------------------------------------------------------------
# The launch test and publishing (ami-publish).
# ---------------------------------------------------------------------------------------------
# RunInstances ({REF}/API_RunInstances.html, `ClientToken`; EC2 developer guide, "Ensure
# idempotency in Amazon EC2 API requests"): "If you retry a request that completed successfully
# using the same client token and the same parameters, the retry succeeds without performing any
# further actions ... one or more of the parameters are different ... the retry fails with an
# IdempotentParameterMismatch error." moto launches a new instance every time.
RUN_TOKENS: dict[tuple[str, str, str], tuple[str, Any]] = {}
_moto_run_instances = InstanceResponse.run_instances


def _signature(self: Any, *skip: str) -> str:
    return json.dumps(
        {k: v for k, v in sorted(self.querystring.items()) if k not in {"Action", "Version", *skip}},
        sort_keys=True,
        default=str,
    )


# RunInstances of an AMI on an instance type of another architecture: EC2 refuses it with
# InvalidParameterValue ("The architecture '<type's>' of the specified instance type does not
# match the architecture '<AMI's>' of the specified AMI. Specify an instance type and an AMI that
# have matching architectures, and try again."); DescribeInstanceTypes
# (`ProcessorInfo.SupportedArchitectures`) and DescribeImages (`Architecture`) say which is which.
# moto launches it.
def _check_architecture(self: Any) -> None:
    ami = self.ec2_backend.amis.get(self._get_param("ImageId"))
    kind = self._get_param("InstanceType")
    if ami is None or not kind:
        return
    described = self.ec2_backend.describe_instance_types([kind], {})
    supported = described[0].get("ProcessorInfo", {}).get("SupportedArchitectures", []) if described else []
    if supported and ami.architecture not in supported:
        raise ClientError(
            "InvalidParameterValue",
            f"The architecture '{supported[0]}' of the specified instance type does not match the architecture "
            f"'{ami.architecture}' of the specified AMI. Specify an instance type and an AMI that have matching "
            "architectures, and try again.",
        )


def run_instances(self: Any) -> ActionResult:
    _check_architecture(self)
    token = self._get_param("ClientToken")
    if not token:
        return _moto_run_instances(self)
    key = (self.current_account, self.region, token)
    signature = _signature(self, "ClientToken")
    if key in RUN_TOKENS:
        seen, reservation = RUN_TOKENS[key]
        if seen != signature:
            raise ClientError(
                "IdempotentParameterMismatch",
                "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
            )
        return ActionResult(reservation)
    result = _moto_run_instances(self)
    RUN_TOKENS[key] = (signature, result.result)
    return result


# Status checks ({REF}/API_DescribeInstanceStatus.html, InstanceStatusSummary: `ok | impaired |
# insufficient-data | not-applicable | initializing`; EC2 User Guide, "Status checks for your
# instances": checks run every minute after launch). A running instance reports `initializing`
# until its first checks complete: here for STATUS_DELAY seconds after launch, or until a test
# sets its checks (`POST /_testbed/instance`). moto reports `ok` the moment it runs.
STATUS_DELAY = float(os.environ.get("AMI_TESTBED_STATUS_DELAY_S", "3"))
INSTANCE_OVERRIDES: dict[str, dict[str, Any]] = {}


def _booted(instance: Any) -> bool:
    launched = instance.launch_time
    if isinstance(launched, str):
        launched = datetime.fromisoformat(launched.replace("Z", "+00:00"))
    if launched.tzinfo is None:
        launched = launched.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - launched).total_seconds() >= STATUS_DELAY


def _check(instance: Any, which: str) -> dict[str, Any]:
    if instance.state_code != 16:
        return {"Status": "not-applicable"}
    status = INSTANCE_OVERRIDES.get(instance.id, {}).get(which)
    if status is None:
        status = "ok" if _booted(instance) else "initializing"
    detail = {"ok": "passed", "impaired": "failed"}.get(status, status)
    return {"Details": [{"Name": "reachability", "Status": detail}], "Status": status}


# GetConsoleOutput ({REF}/API_GetConsoleOutput.html): the instance's own buffered console output,
# base64, posted shortly after a state transition ("Only the most recent 64 KB"), absent until
# then. moto answers every instance, at any time, with the same 2006 boot log. Here: nothing until
# the instance has booted, then a boot log ending in a login prompt, or what a test sets.
BOOT_LOG = "Linux version 6.8.0-aws\nCloud-init finished\n\nUbuntu 24.04 LTS {host} ttyS0\n\n{host} login: "


def get_console_output(self: Any) -> ActionResult:
    instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
    self.error_on_dryrun()
    text = INSTANCE_OVERRIDES.get(instance.id, {}).get("console")
    if text is None and instance.state_code == 16 and _booted(instance):
        text = BOOT_LOG.format(host=f"ip-{instance.id[-6:]}")
    result: dict[str, Any] = {"InstanceId": instance.id, "Timestamp": datetime.now(timezone.utc)}
    if text:
        from moto.ec2.utils import Base64EncodedString

        result["Output"] = Base64EncodedString.from_raw_string(text[-65536:])
    return ActionResult(result)


# The stack's HMAC key (template.yaml `SigningKey`: KeySpec HMAC_256, KeyUsage
# GENERATE_VERIFY_MAC), made once per test bed in the default account's us-east-1, as the
# template makes it in the stack's region. moto serves GenerateMac and VerifyMac as KMS does
# (KMSInvalidMacException for a MAC that does not verify).
SIGNING_KEY: list[str] = []


# The event outbox (template.yaml, EventOutbox): an SQS queue whose redrive policy moves a
# message received once and not deleted to the failure queue (SQS Developer Guide, "Using
# dead-letter queues": maxReceiveCount). Made at the first call, as the stack makes it.
OUTBOX: list[str] = []


def event_outbox(host: str) -> str:
    from moto.sqs.models import sqs_backends

    if not OUTBOX:
        backend = sqs_backends["123456789012"]["us-east-1"]
        failures = backend.create_queue("ami-lifecycle-failures")
        backend.create_queue(
            "ami-lifecycle-event-outbox",
            VisibilityTimeout="900",
            RedrivePolicy=json.dumps({"deadLetterTargetArn": failures.queue_arn, "maxReceiveCount": 1}),
        )
        OUTBOX.append(f"http://{host}/123456789012/ami-lifecycle-event-outbox")
    return OUTBOX[0]


def signing_key() -> str:
    if not SIGNING_KEY:
        from moto.kms.models import kms_backends

        key = kms_backends["123456789012"]["us-east-1"].create_key(
            policy=None,
            key_usage="GENERATE_VERIFY_MAC",
            key_spec="HMAC_256",
            description="ami-lifecycle signing key (test bed)",
            tags=None,
        )
        SIGNING_KEY.append(key.arn)
    return SIGNING_KEY[0]


# EventBridge Scheduler's one-time schedules ("Schedule types": `at(yyyy-mm-ddThh:mm:ss)` runs
# once at that time in ScheduleExpressionTimezone; ActionAfterCompletion DELETE removes it after
# it ran; "Using universal targets": `arn:aws:scheduler:::aws-sdk:<service>:<apiAction>` calls
# the API with `Input` as its request). moto stores schedules and never runs them. Here a runner
# runs the due ones whose target is EC2 TerminateInstances (the launch tests' dead-man switch),
# on a clock a test may move ahead (`POST /_testbed/scheduler {"advance_minutes": N}`).
SCHEDULER_CLOCK: list[float] = [0.0]
#: Plain moto runs no schedule: the route only moves the clock.
SCHEDULER_RUNS: list[bool] = [True]
SCHEDULES_RUN: list[dict[str, Any]] = []
TERMINATE_TARGET = re.compile(r"^arn:aws[a-z-]*:scheduler:::aws-sdk:ec2:terminateInstances$")


def run_due_schedules() -> None:
    from moto.scheduler.models import scheduler_backends

    now = datetime.now(timezone.utc) + timedelta(minutes=SCHEDULER_CLOCK[0])
    for account, by_region in list(scheduler_backends.items()):
        for region, backend in list(by_region.items()):
            for group in list(backend.schedule_groups.values()):
                for schedule in list(group.schedules.values()):
                    found = re.fullmatch(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)", schedule.schedule_expression or "")
                    if not found or schedule.state != "ENABLED":
                        continue
                    due = datetime.fromisoformat(found.group(1)).replace(tzinfo=timezone.utc)
                    if due > now or not TERMINATE_TARGET.match(schedule.target.get("Arn", "")):
                        continue
                    ids = json.loads(schedule.target.get("Input") or "{}").get("InstanceIds", [])
                    try:
                        ec2_backends[account][region].terminate_instances(ids)
                    except Exception as err:  # noqa: BLE001 - a failed run, as Scheduler retries it
                        SCHEDULES_RUN.append(
                            {"name": schedule.name, "instance_ids": ids, "region": region, "error": repr(err)}
                        )
                        continue
                    SCHEDULES_RUN.append({"name": schedule.name, "instance_ids": ids, "region": region})
                    if schedule.action_after_completion == "DELETE":
                        group.delete_schedule(schedule.name)


def scheduler(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: move the scheduler's clock ahead by `advance_minutes`, run what is due, and
    answer the schedules run so far."""
    SCHEDULER_CLOCK[0] += float(body.get("advance_minutes", 0))
    if SCHEDULER_RUNS[0]:
        run_due_schedules()
    return {"run": SCHEDULES_RUN}


def set_instance(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: an instance's status checks (`system_status`, `instance_status`) and its
    console output (`console`), as EC2 would report them; `launched_minutes_ago` moves its
    LaunchTime back (in `region`, default us-east-1), so a test shows a launch test's timeout
    without a clock ahead of the wall clock."""
    entry = INSTANCE_OVERRIDES.setdefault(body["instance_id"], {})
    for field in ("system_status", "instance_status", "console"):
        if field in body:
            entry[field] = body[field]
    if "launched_minutes_ago" in body:
        backend = ec2_backends[body.get("account_id", "123456789012")][body.get("region", "us-east-1")]
        instance = backend.get_instance(body["instance_id"])
        launched = datetime.now(timezone.utc) - timedelta(minutes=float(body["launched_minutes_ago"]))
        instance.launch_time = launched.replace(tzinfo=None)
    return {"instance_id": body["instance_id"], **entry}


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
    signature = _signature(self, "ClientToken")
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
    ami = ec2_backends[self.current_account][self.region].amis.get(self._get_param("Value"))
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


# CreateGrant (KMS API reference, `Name`): "When this value is present, you can retry a
# CreateGrant request with identical parameters; if the grant already exists, the original
# GrantId is returned without creating a new grant." moto makes a new grant every time.
_moto_create_grant = KmsBackend.create_grant


def create_grant(
    self: Any,
    key_id: str,
    grantee_principal: str,
    operations: list[str],
    name: str,
    constraints: dict[str, Any],
    retiring_principal: str,
) -> tuple[str, str]:
    with CREATE_LOCK:
        if name:
            key = self.describe_key(key_id)
            for grant in key.grants.values():
                if (grant.name, grant.grantee_principal, sorted(grant.operations or [])) == (
                    name,
                    grantee_principal,
                    sorted(operations or []),
                ):
                    from moto.moto_api._internal import mock_random

                    return grant.id, mock_random.get_random_hex()
        return _moto_create_grant(self, key_id, grantee_principal, operations, name, constraints, retiring_principal)


# RetireGrant (KMS API reference, Errors): a grant that does not exist (retired already) is
# `NotFoundException`; moto retires nothing and answers success.
_moto_retire_grant = KmsBackend.retire_grant


def retire_grant(self: Any, key_id: str, grant_id: str, grant_token: str) -> None:
    from moto.kms.exceptions import NotFoundException

    key = self.describe_key(key_id)
    if not grant_token and grant_id not in key.grants:
        raise NotFoundException(f"Grant ID {grant_id} not found")
    if not grant_token and GRANT_CLOCK["lag_seconds"] > 0:
        RETIRED_GRANTS[grant_id] = (key.id, key.grants[grant_id], time.monotonic() + GRANT_CLOCK["lag_seconds"])
    _moto_retire_grant(self, key_id, grant_id, grant_token)


# Grants are eventually consistent (KMS Developer Guide, "Grants in AWS KMS", eventual
# consistency: a created or retired grant can take a while to be seen everywhere). A retired
# grant stays in ListGrants for `lag_seconds` (`POST /_testbed/kms {"grant_lag_seconds"}`;
# default 0), while RetireGrant of it answers NotFoundException, as it is gone.
GRANT_CLOCK = {"lag_seconds": 0.0}
RETIRED_GRANTS: dict[str, tuple[str, Any, float]] = {}
_moto_list_grants = KmsBackend.list_grants


def list_grants(self: Any, key_id: str, grant_id: str) -> list[Any]:
    grants = list(_moto_list_grants(self, key_id, grant_id))
    key = self.describe_key(key_id)
    now = time.monotonic()
    for gid, (kid, grant, until) in list(RETIRED_GRANTS.items()):
        if until <= now:
            del RETIRED_GRANTS[gid]
        elif kid == key.id and (not grant_id or grant_id == gid):
            grants.append(grant)
    return grants


def kms_clock(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: how long a retired grant is still listed (`grant_lag_seconds`)."""
    GRANT_CLOCK["lag_seconds"] = float(body.get("grant_lag_seconds", GRANT_CLOCK["lag_seconds"]))
    return {"grant_lag_seconds": GRANT_CLOCK["lag_seconds"]}


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


def apply_patches() -> None:
    TaggedEC2Resource.get_tags = _tags_of_resource
    KmsBackend.create_grant = create_grant
    KmsBackend.retire_grant = retire_grant
    moto_instances.InstanceBackend.get_reservations_by_instance_ids = reservations_by_ids
    moto_instances.InstanceBackend.describe_instances = describe_reservations
    KmsBackend.list_grants = list_grants
    InstanceResponse.run_instances = atomic(run_instances)
    moto_instances.Instance.instance_status = property(lambda self: _check(self, "instance_status"))
    moto_instances.Instance.system_status = property(lambda self: _check(self, "system_status"))
    GeneralResponse.get_console_output = get_console_output
    LaunchTemplatesResponse.create_launch_template_version = atomic(create_launch_template_version)
    SimpleSystemManagerResponse.put_parameter = put_parameter
    AmisResponse.copy_image = atomic(copy_image)
    EBSBackend.create_snapshot = create_snapshot
    ElasticBlockStore.modify_snapshot_attribute = modify_snapshot_attribute
    KmsBackend.create_alias = create_alias
    moto_instances.Instance.__init__ = instance_init
    moto_instances.InstanceBackend.run_instances = run_instances_with_ami_volumes
    InstanceResponse._parse_block_device_mapping = _requested_mappings
    AmisResponse.describe_image_references = describe_image_references
    AmisResponse.list_images_in_recycle_bin = list_images_in_recycle_bin
    ElasticBlockStore.list_snapshots_in_recycle_bin = list_snapshots_in_recycle_bin
    ElasticBlockStore.restore_snapshot_from_recycle_bin = restore_snapshot_from_recycle_bin
    AmisResponse.restore_image_from_recycle_bin = restore_image_from_recycle_bin
    AmisResponse.enable_image_deregistration_protection = enable_image_deregistration_protection
    AmisResponse.disable_image_deregistration_protection = disable_image_deregistration_protection
    AmisResponse.create_image_usage_report = create_image_usage_report
    AmisResponse.describe_image_usage_reports = describe_image_usage_reports
    AmisResponse.describe_image_usage_report_entries = describe_image_usage_report_entries
    LaunchTemplatesResponse.describe_launch_template_versions = describe_launch_template_versions
    LaunchTemplatesResponse.delete_launch_template_versions = delete_launch_template_versions
    moto_launch_templates.LaunchTemplate.create_version = _create_version
    moto_amis.AmiBackend.disable_image = disable_image
    AmisResponse.get_image_block_public_access_state = get_image_block_public_access_state
    AmisResponse.enable_image_block_public_access = enable_image_block_public_access
    AmisResponse.disable_image_block_public_access = disable_image_block_public_access
    AmisResponse.create_image = atomic(create_image)
    AmisResponse.register_image = atomic(register_image)
    AmisResponse.describe_images = describe_images
    AmisResponse.deregister_image = deregister_image
    AmisResponse.enable_image_deprecation = enable_image_deprecation
    AmisResponse.disable_image_deprecation = disable_image_deprecation
    AmisResponse.modify_image_attribute = modify_image_attribute
    ElasticBlockStore.describe_snapshots = describe_snapshots
    EBSBackend.delete_snapshot = delete_snapshot
    for attr in ("deprecation_time", "last_launched_time", "ena_support", "source_image_id", "source_image_region"):
        if not hasattr(Ami, attr):
            setattr(Ami, attr, None)
    Ami.deregistration_protection = "disabled"


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
    from datetime import timedelta

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
        _drop_auto_snapshot(backend, ami)
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


CALLS: dict[str, int] = {}
# Seconds the emulator spent serving each action (benchmarks: where a run's wall time goes).
SERVED_S: dict[str, float] = {}
# When each action was first and last served (monotonic seconds): a benchmark's span of calls.
SPANS: dict[str, list[float]] = {}
CALLS_LOCK = threading.Lock()
# One request at a time inside moto: EC2 serves each request atomically, and moto's backends
# are plain dicts (a DeregisterImage that iterates the images while another pops one fails with
# a 500 after it deregistered, and the SDK's retry then finds the AMI gone). Faults, slow
# answers and throttling happen outside it.
MOTO_LOCK = threading.Lock()
# Injected faults: action -> [error code, how many more calls get it]. Test set-up only: the
# errors are EC2's own codes (RequestLimitExceeded, InvalidSnapshot.InUse, ...), answered in
# EC2's XML error format, so the real SDK sees exactly what EC2 would send.
FAULTS: dict[str, list[Any]] = {}


# Throttling as EC2 does it (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html:
# token buckets per account and region, RequestLimitExceeded when empty):
# each bucket holds `size` tokens in each region, refilled at `refill` per second; a call of an
# action in the bucket takes a token of its region's bucket or is answered RequestLimitExceeded.
# Scaled-down buckets make a large run's pacing measurable in seconds.
BUCKETS: dict[str, dict[str, Any]] = {}


def take_token(action: str, region: str) -> bool:
    import time as _time

    with CALLS_LOCK:
        for bucket in BUCKETS.values():
            if action not in bucket["actions"]:
                continue
            now = _time.monotonic()
            state = bucket["regions"].setdefault(region, {"tokens": bucket["size"], "at": now})
            state["tokens"] = min(bucket["size"], state["tokens"] + (now - state["at"]) * bucket["refill"])
            state["at"] = now
            if state["tokens"] < 1:
                bucket["throttled"] += 1
                return False
            state["tokens"] -= 1
    return True


def ec2_error(code: str, message: str, status: int, request_id: str) -> Response:
    """An error in EC2's XML error format (as EC2 and the SDKs' ec2 protocol parsers have it)."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
    )
    return Response(body, status=status, mimetype="text/xml")


def dropped() -> Response:
    """A dropped connection: headers promise a body that never comes."""

    def broken() -> Any:
        yield b"<?xml"
        raise ConnectionAbortedError("dropped by the test bed")

    return Response(broken(), status=200, headers={"Content-Length": "4096"}, mimetype="text/xml")


# `LOSE`: the call is executed, then its response is lost (the connection drops): EC2 did it,
# and the client never heard. The real idempotency hazard of every mutating call.
LOSE = Response("lose", status=599)


def fault_response(action: str, region: str, json_protocol: bool = False) -> Response | None:
    if not take_token(action, region):
        return ec2_error("RequestLimitExceeded", "Request limit exceeded.", 503, "throttle")
    with CALLS_LOCK:
        fault = FAULTS.get(action)
        if not fault or fault[1] <= 0:
            return None
        fault[1] -= 1
        code = fault[0]
    if code.startswith("SLOW:"):
        # A slow answer: wait, then serve the call normally.
        import time as _time

        _time.sleep(int(code.split(":", 1)[1]) / 1000)
        return None
    if code == "DROP":
        return dropped()
    if code == "HANG":
        # A call that never answers (the client's timeouts must end it): hold the connection,
        # then drop it without serving the call.
        import time as _time

        _time.sleep(120)
        return dropped()
    if code == "LOSE":
        return LOSE
    status = {"RequestLimitExceeded": 503, "InternalError": 500, "Unavailable": 503}.get(code, 400)
    if json_protocol:
        # KMS, SSM, EventBridge: their JSON error format.
        body = json.dumps({"__type": code, "message": "injected by the test bed"})
        return Response(
            body,
            status=status,
            content_type="application/x-amz-json-1.1",
            headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": "fault"},
        )
    return ec2_error(code, "injected by the test bed", status, "fault")


# The contract check (contract.py). botocore's service model is the data the AWS SDKs are
# generated from; a request that breaks it is refused as the service refuses it: EC2 with
# MissingParameter, UnknownParameter or InvalidParameterValue
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html), in its XML error
# format; EventBridge, KMS and SSM with ValidationException in their JSON error format.
def denied_response(environ: dict[str, Any], call: Any, decision: Any) -> Response:
    """IAM's refusal, as the service sends it: EC2's `UnauthorizedOperation` with an encoded
    authorization message (here base64 JSON, where AWS encrypts it for sts:DecodeAuthorizationMessage),
    the JSON services' `AccessDeniedException`."""
    import base64

    a = decision.authorization
    role = authorize.roles().role_arn(call.caller)
    why = f" ({a.why})" if a.why else ""
    message = (
        f"User: {role} is not authorized to perform: {a.action} on resource: {a.resource}{why} "
        f"because no identity-based policy allows the {a.action} action"
    )
    if "HTTP_X_AMZ_TARGET" not in environ and call.service == "ec2":
        encoded = base64.b64encode(
            json.dumps(
                {"action": a.action, "resource": a.resource, "context": a.context, "result": decision.result}
            ).encode()
        ).decode()
        return ec2_error(
            "UnauthorizedOperation",
            f"You are not authorized to perform this operation. {message}. "
            f"Encoded authorization failure message: {encoded}",
            403,
            "iam",
        )
    body = json.dumps({"__type": "AccessDeniedException", "message": message})
    return Response(
        body,
        status=400,
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": "AccessDeniedException", "x-amzn-RequestId": "iam"},
    )


def authorize_call(environ: dict[str, Any], body: bytes) -> Response | None:
    """IAM on a request a function made (tests/support/authorize.py): its denial, or None."""
    call = authorize.parse(environ, body)
    if call is None:
        return None
    try:
        with MOTO_LOCK:
            requests = iam_requests.requests_for(call)
            if requests is None:
                with authorize.DECISIONS_LOCK:
                    UNEVALUATED.add(f"{call.caller} {call.service}:{call.action}")
                authorize.log({"caller": call.caller, "call": f"{call.service}:{call.action}", "result": "Unevaluated"})
                return None
            decision = authorize.authorize(call, requests)
    except Exception as err:  # noqa: BLE001 - the evaluator's own failure: loud, never an allow
        import traceback

        traceback.print_exc()
        with authorize.DECISIONS_LOCK:
            UNEVALUATED.add(f"{call.caller} {call.service}:{call.action}: evaluator failed: {err!r}")
        authorize.log(
            {
                "caller": call.caller,
                "call": f"{call.service}:{call.action}",
                "result": "EvaluatorFailed",
                "error": repr(err),
            }
        )
        return (
            ec2_error("InternalError", f"the test bed's IAM evaluation failed: {err!r}", 500, "iam")
            if call.service == "ec2"
            else Response(
                json.dumps({"__type": "InternalFailure", "message": repr(err)}),
                status=500,
                content_type="application/x-amz-json-1.1",
            )
        )
    return denied_response(environ, call, decision) if decision is not None else None


def instance_profile(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: an instance profile `name` with a role `role` in it (IAM, as a person makes
    them): `{"profile_arn", "role_arn"}`."""
    from moto.iam.models import iam_backends

    backend = iam_backends["123456789012"]["global"]
    role = backend.create_role(body["role"], "{}", "/", None, "", [], None, None)
    profile = backend.create_instance_profile(body["name"], "/", [], [])
    backend.add_role_to_instance_profile(body["name"], body["role"])
    return {"profile_arn": profile.arn, "role_arn": role.arn}


TOOL_BUS = "ami-lifecycle-ami-lifecycle"
DEAD_MAN_GROUP = "ami-lifecycle-dead-man"

# Calls no builder of tests/support/iam_requests.py knows: reported, and the test run fails.
UNEVALUATED: set[str] = set()


def contract_response(violation: contract.Violation) -> Response:
    if violation.protocol == "ec2":
        return ec2_error(violation.code, violation.message, 400, "contract")
    body = json.dumps({"__type": violation.code, "message": violation.message})
    return Response(
        body,
        status=400,
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": violation.code, "x-amzn-RequestId": "contract"},
    )


def read_body(environ: dict[str, Any]) -> bytes:
    """The request's body, read once; wsgi.input is replaced so that moto reads it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


# (caller, IAM action) pairs seen; the caller is the `app/<name>` token the functions put in
# their user agent (the SDK's AppName), the IAM action `<signing service>:<action>`.
CALLERS: set[tuple[str, str]] = set()
CALL_LOG = os.environ.get("AMI_TESTBED_CALL_LOG")
APP = re.compile(r"(?:^|\s)app/([A-Za-z0-9!#$%&'*+\-.^_`|~]+)")


def record_caller(environ: dict[str, Any], action: str) -> None:
    """Records which function called which IAM action (requests without an app name, the tests'
    own set-up calls, are not recorded)."""
    agent = f"{environ.get('HTTP_X_AMZ_USER_AGENT', '')} {environ.get('HTTP_USER_AGENT', '')}"
    app, service = APP.search(agent), contract._signing_service(environ)
    if not app or not service:
        return
    pair = (app.group(1), f"{service}:{action}")
    with CALLS_LOCK:
        if pair in CALLERS:
            return
        CALLERS.add(pair)
        if CALL_LOG:
            with open(CALL_LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps({"caller": pair[0], "action": pair[1]}) + "\n")


def count_call(environ: dict[str, Any], body: bytes) -> str | None:
    """Counts query-protocol actions (EC2), JSON-protocol targets (EventBridge, SSM, KMS) and
    EventBridge Scheduler's REST operations."""
    action = None
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action = target.split(".")[-1]
    elif contract._signing_service(environ) == "scheduler":
        # REST-JSON (EventBridge Scheduler API reference): the method and the path name it.
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        one = path.startswith("/schedules/")
        action = {
            ("POST", True): "CreateSchedule",
            ("DELETE", True): "DeleteSchedule",
            ("GET", True): "GetSchedule",
            ("PUT", True): "UpdateSchedule",
            ("GET", False): "ListSchedules",
        }.get((method, one))
    else:
        for pair in body.decode("utf-8", "replace").split("&"):
            if pair.startswith("Action="):
                action = pair[len("Action=") :]
                break
    if action:
        with CALLS_LOCK:
            CALLS[action] = CALLS.get(action, 0) + 1
        record_caller(environ, action)
    return action


#: Test set-up routes answered in JSON under moto's lock: path -> what each does with the
#: request's JSON body (empty for a GET) and its WSGI environment.
SETUP_ROUTES: dict[str, Any] = {
    "/_testbed/fleet": lambda body, environ: seed_fleet(body),
    "/_testbed/scheduler": lambda body, environ: scheduler(body),
    "/_testbed/ssm": lambda body, environ: ssm(body),
    "/_testbed/event-outbox": lambda body, environ: {"url": event_outbox(environ.get("HTTP_HOST", "127.0.0.1"))},
    "/_testbed/signing-key": lambda body, environ: {"key_arn": signing_key()},
    "/_testbed/instance": lambda body, environ: set_instance(body),
    "/_testbed/usage-report": lambda body, environ: complete_usage_report(body),
    "/_testbed/function": lambda body, environ: (
        authorize.roles().function_started(body["name"], body.get("env", {})) or {}
    ),
    "/_testbed/deploy": lambda body, environ: authorize.roles().deploy(body.get("parameters", {})) or {},
    "/_testbed/instance-profile": lambda body, environ: instance_profile(body),
    "/_testbed/kms": lambda body, environ: kms_clock(body),
    "/_testbed/clock": lambda body, environ: clock(body),
    "/_testbed/role": lambda body, environ: authorize.roles().override(body["name"], body["statements"]) or {},
    "/_testbed/expect-denials": lambda body, environ: (
        setattr(authorize.roles(), "denials_expected", set(body.get("actions", []))) or {}
    ),
}


class Testbed:
    def __init__(self, app: Any, check_contract: bool = True, check_iam: bool = True):
        self.app = app
        self.check_contract = check_contract
        self.check_iam = check_iam

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "") == "/_testbed/faults":
            body = json.loads(Request(environ).get_data() or b"{}")
            with CALLS_LOCK:
                FAULTS[body["action"]] = [body["code"], int(body.get("count", 1))]
            return Response("{}", status=200, mimetype="application/json")(environ, start_response)
        if environ.get("PATH_INFO", "") == "/_testbed/throttle":
            request = Request(environ)
            if request.method == "POST":
                body = json.loads(request.get_data() or b"{}")
                with CALLS_LOCK:
                    BUCKETS.clear()
                    for name, b in body.items():
                        BUCKETS[name] = {
                            "actions": set(b["actions"]),
                            "size": float(b["size"]),
                            "refill": float(b["refill"]),
                            "regions": {},
                            "throttled": 0,
                        }
            with CALLS_LOCK:
                out = {k: {"throttled": v["throttled"]} for k, v in BUCKETS.items()}
            return Response(json.dumps(out), status=200, mimetype="application/json")(environ, start_response)
        if environ.get("PATH_INFO", "") == "/_testbed/calls":
            with CALLS_LOCK:
                response = Response(json.dumps(CALLS), status=200, mimetype="application/json")
            return response(environ, start_response)
        if environ.get("PATH_INFO", "") == "/_testbed/times":
            with CALLS_LOCK:
                response = Response(json.dumps(SERVED_S), status=200, mimetype="application/json")
            return response(environ, start_response)
        if environ.get("PATH_INFO", "") == "/_testbed/spans":
            with CALLS_LOCK:
                response = Response(json.dumps(SPANS), status=200, mimetype="application/json")
            return response(environ, start_response)
        if environ.get("PATH_INFO", "") == "/_testbed/callers":
            with CALLS_LOCK:
                out: dict[str, list[str]] = {}
                for caller, act in sorted(CALLERS):
                    out.setdefault(caller, []).append(act)
            return Response(json.dumps(out), status=200, mimetype="application/json")(environ, start_response)
        if environ.get("PATH_INFO", "") == "/_testbed/iam":
            out = {**authorize.report(), "unevaluated": sorted(UNEVALUATED), "enabled": self.check_iam}
            return Response(json.dumps(out), status=200, mimetype="application/json")(environ, start_response)
        if environ.get("PATH_INFO", "") == "/_testbed/events":
            response = Response(json.dumps(PUBLISHED), status=200, mimetype="application/json")
            return response(environ, start_response)
        route = SETUP_ROUTES.get(environ.get("PATH_INFO", ""))
        if route is not None:
            body = json.loads(Request(environ).get_data() or b"{}")
            with MOTO_LOCK:
                out = route(body, environ)
            return Response(json.dumps(out), status=200, mimetype="application/json")(environ, start_response)
        if environ.get("PATH_INFO", "").startswith("/_testbed/image"):
            request = Request(environ)
            try:
                with MOTO_LOCK:
                    out = seed_image(json.loads(request.get_data() or b"{}"))
                response = Response(json.dumps(out), status=200, mimetype="application/json")
            except (KeyError, ValueError) as err:
                response = Response(json.dumps({"error": repr(err)}), status=400)
            return response(environ, start_response)
        body = read_body(environ)
        if contract._signing_service(environ) == "rbin" and self.check_contract:
            method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
            operation = {("POST", "/rules"): "CreateRule", ("POST", "/list-rules"): "ListRules"}.get(
                (method, path), "GetRule" if method == "GET" and path.startswith("/rules/") else f"{method} {path}"
            )
            with CALLS_LOCK:
                CALLS[operation] = CALLS.get(operation, 0) + 1
            record_caller(environ, operation)
            denial = authorize_call(environ, body) if self.check_iam else None
            if denial is not None:
                return denial(environ, start_response)
            injected = fault_response(operation, contract._signing_region(environ), True)
            if injected is not None and injected is not LOSE:
                return injected(environ, start_response)
            with MOTO_LOCK:
                answer = rbin_response(environ, body)
            return answer(environ, start_response)
        action = count_call(environ, body)  # a refused call counts too: the SDK made it
        if self.check_contract:
            violation = contract.check_request(environ, body)
            if violation is not None:
                return contract_response(violation)(environ, start_response)
        if self.check_iam:
            denial = authorize_call(environ, body)
            if denial is not None:
                return denial(environ, start_response)
        injected = (
            fault_response(action, contract._signing_region(environ), "HTTP_X_AMZ_TARGET" in environ)
            if action
            else None
        )
        if injected is LOSE:
            with MOTO_LOCK:
                served = self.app(environ, lambda status, headers, exc_info=None: None)
                for _ in served:  # run the call to the end, and throw its answer away
                    pass
                if hasattr(served, "close"):
                    served.close()
            return dropped()(environ, start_response)
        if injected is not None:
            return injected(environ, start_response)
        with MOTO_LOCK:
            started = time.perf_counter()
            if SSM_VALIDATING:
                settle_parameters()  # every read answers what SSM has validated by now
            answer = self.app(environ, start_response)
            try:
                served = list(answer)
            finally:
                if hasattr(answer, "close"):
                    answer.close()
        note_created(action, environ, body, served)
        if action:
            with CALLS_LOCK:
                SERVED_S[action] = SERVED_S.get(action, 0.0) + time.perf_counter() - started
                now = time.monotonic()
                SPANS.setdefault(action, [now, now])[1] = now
        return served


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="moto as it is: no EC2 patches, no contract check")
    parser.add_argument(
        "--no-contract", action="store_true", help="the EC2 patches without the contract check (contract.py)"
    )
    parser.add_argument(
        "--no-iam",
        action="store_true",
        help="no IAM evaluation of the functions' requests (authorize.py); also AMI_TESTBED_IAM=off",
    )
    args = parser.parse_args()
    EventsBackend.put_events = put_events  # observation only: changes no behaviour
    if not args.plain:
        apply_patches()
        # The tool's bus, as the template makes it (`${AWS::StackName}-ami-lifecycle`, the stack
        # named ami-lifecycle): the functions publish there, under the bus's resource policy.
        from moto.events.models import events_backends

        events_backends["123456789012"]["us-east-1"].create_event_bus(TOOL_BUS)
        # And the dead-man switch's schedule group (`DeadManGroup`).
        from moto.scheduler.models import scheduler_backends

        scheduler_backends["123456789012"]["us-east-1"].create_schedule_group(DEAD_MAN_GROUP, [])
    app = DomainDispatcherApplication(create_backend_app)
    testbed = Testbed(
        app,
        check_contract=not (args.plain or args.no_contract),
        check_iam=not (args.plain or args.no_iam or not authorize.ENABLED[0]),
    )
    server = make_server("127.0.0.1", args.port, testbed, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"READY {server.server_address[1]}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        try:
            while sys.stdin.read(1):
                pass
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    SCHEDULER_RUNS[0] = not args.plain
    if not args.plain:

        def run_schedules() -> None:
            while not stop.wait(1.0):
                with MOTO_LOCK:
                    run_due_schedules()

        threading.Thread(target=run_schedules, daemon=True).start()
    stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
