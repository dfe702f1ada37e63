"""Instances: RunInstances (the AMI's volumes, idempotency, architecture), status checks, console output."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.ec2.models import instances as moto_instances
from moto.ec2.responses.general import General as GeneralResponse
from moto.ec2.responses.instances import InstanceResponse

from .common import ClientError, atomic

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


def request_signature(self: Any, *skip: str) -> str:
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
    signature = request_signature(self, "ClientToken")
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


def instance_profile(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: an instance profile `name` with a role `role` in it (IAM, as a person makes
    them): `{"profile_arn", "role_arn"}`."""
    from moto.iam.models import iam_backends

    backend = iam_backends["123456789012"]["global"]
    role = backend.create_role(body["role"], "{}", "/", None, "", [], None, None)
    profile = backend.create_instance_profile(body["name"], "/", [], [])
    backend.add_role_to_instance_profile(body["name"], body["role"])
    return {"profile_arn": profile.arn, "role_arn": role.arn}


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    InstanceResponse.run_instances = atomic(run_instances)
    moto_instances.Instance.instance_status = property(lambda self: _check(self, "instance_status"))
    moto_instances.Instance.system_status = property(lambda self: _check(self, "system_status"))
    GeneralResponse.get_console_output = get_console_output
    moto_instances.Instance.__init__ = instance_init
    moto_instances.InstanceBackend.run_instances = run_instances_with_ami_volumes
    InstanceResponse._parse_block_device_mapping = _requested_mappings
