"""The authorization requests AWS makes for each call the functions make (tests/support/
authorize.py evaluates them): per action, the resources the Service Authorization Reference
lists and the context keys with their values, read from the emulated account. An action without
a builder here is not evaluated and is reported (`GET /_testbed/iam`, `unevaluated`): the test
run fails on it, so a new call cannot slip past IAM.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from authorize import Authorization, Call, current_account, roles

# The ids that stand for a resource a call creates (AWS authorizes the new resource before it
# has an id; a policy names it with a wildcard, which these match).
NEW_IDS = {"instance": "i-0new", "volume": "vol-0new", "network-interface": "eni-0new"}


def ec2_backend(region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[current_account()][region]


def tag_keys(prefix: str, tags: dict[str, str]) -> dict[str, Any]:
    return {f"{prefix}/{k}": v for k, v in tags.items()}


def request_tags(tags: dict[str, str]) -> dict[str, Any]:
    """aws:RequestTag/... and aws:TagKeys of tags a request sets (none: no key at all)."""
    if not tags:
        return {}
    return {**tag_keys("aws:RequestTag", tags), "aws:TagKeys": sorted(tags)}


# What the Recycle Bin holds (set by the test bed): (region, id) -> {"ami" or "snapshot", "tags"}.
# A binned AMI or snapshot is still the account's, with its tags, to IAM.
def _nothing_binned(region: str, resource_id: str) -> dict[str, Any] | None:
    return None


BINNED: Callable[[str, str], dict[str, Any] | None] = _nothing_binned


def resource_tags(region: str, resource_id: str) -> dict[str, Any]:
    tags = dict(ec2_backend(region).tags.get(resource_id, {}))
    binned = BINNED(region, resource_id)
    if not tags and binned is not None:
        tags = dict(binned.get("tags", {}))
    return {**tag_keys("aws:ResourceTag", tags), **tag_keys("ec2:ResourceTag", tags)}


# ---------------------------------------------------------------------------------------------
# EC2 resources as IAM sees them.
# ---------------------------------------------------------------------------------------------
def image(call: Call, image_id: str, region: str | None = None) -> Authorization:
    region = region or call.region
    ami = ec2_backend(region).amis.get(image_id) or (BINNED(region, image_id) or {}).get("ami")
    context: dict[str, Any] = {"ec2:ImageID": image_id, "ec2:ImageType": "machine"}
    if ami is not None:
        context.update(
            {
                "ec2:Owner": ami.owner_id,
                "ec2:Public": "true" if ami.is_public else "false",
                "ec2:RootDeviceType": ami.root_device_type or "ebs",
                **resource_tags(region, image_id),
            }
        )
    return Authorization(call.action, f"arn:aws:ec2:{region}::image/{image_id}", "image", context, missing=ami is None)


def new_image(call: Call, action: str | None = None) -> Authorization:
    context = {"ec2:Owner": current_account(), **request_tags(call.tag_specifications("image"))}
    return Authorization(
        action or call.action, f"arn:aws:ec2:{call.region}::image/ami-new", "image", context, why="the AMI it makes"
    )


def snapshot(call: Call, snapshot_id: str) -> Authorization:
    snap = ec2_backend(call.region).snapshots.get(snapshot_id) or (BINNED(call.region, snapshot_id) or {}).get(
        "snapshot"
    )
    context: dict[str, Any] = {"ec2:SnapshotID": snapshot_id}
    if snap is not None:
        context.update(
            {
                "ec2:Owner": snap.owner_id,
                "ec2:Encrypted": "true" if snap.encrypted else "false",
                "ec2:VolumeSize": str(snap.volume.size) if getattr(snap, "volume", None) else "8",
                "ec2:ParentVolume": f"arn:aws:ec2:{call.region}:{current_account()}:volume/{snap.volume.id}"
                if getattr(snap, "volume", None)
                else "",
                **resource_tags(call.region, snapshot_id),
            }
        )
    return Authorization(
        call.action, f"arn:aws:ec2:{call.region}::snapshot/{snapshot_id}", "snapshot", context, missing=snap is None
    )


def new_snapshot(call: Call) -> Authorization:
    return Authorization(
        call.action,
        f"arn:aws:ec2:{call.region}::snapshot/snap-new",
        "snapshot",
        request_tags(call.tag_specifications("snapshot")),
        why="the snapshots it makes",
    )


def instance(call: Call, instance_id: str) -> Authorization:
    backend = ec2_backend(call.region)
    context: dict[str, Any] = {"ec2:InstanceID": instance_id}
    try:
        found = backend.get_instance(instance_id)
    except Exception:  # noqa: BLE001 - a missing instance: EC2 answers for it, not IAM
        found = None
    if found is not None:
        tokens = getattr(getattr(found, "metadata_options", None), "http_tokens", "optional")
        context.update(
            {
                "ec2:InstanceType": found.instance_type,
                "ec2:RootDeviceType": "ebs",
                "ec2:Tenancy": "default",
                "ec2:MetadataHttpTokens": tokens,
                "ec2:AvailabilityZone": str(getattr(found.placement, "zone", found.placement)),
                **resource_tags(call.region, instance_id),
            }
        )
    return Authorization(
        call.action,
        f"arn:aws:ec2:{call.region}:{current_account()}:instance/{instance_id}",
        "instance",
        context,
        missing=found is None,
    )


def launch_template(call: Call, template_id: str | None, name: str | None) -> Authorization:
    backend = ec2_backend(call.region)
    found = None
    if template_id:
        found = backend.launch_templates.get(template_id)
    elif name:
        ids = getattr(backend, "launch_template_name_to_ids", {})
        found = backend.launch_templates.get(ids.get(name, ""))
    ident = found.id if found is not None else (template_id or name or "lt-unknown")
    context = resource_tags(call.region, ident) if found is not None else {}
    return Authorization(
        call.action,
        f"arn:aws:ec2:{call.region}:{current_account()}:launch-template/{ident}",
        "launch-template",
        context,
    )


def created_tags(call: Call, tagged: list[tuple[str, str]]) -> list[Authorization]:
    """CreateTags, which AWS authorizes for each resource a create call tags (ec2:CreateAction)."""
    out = []
    for resource_type, arn in tagged:
        tags = call.tag_specifications(resource_type)
        if not tags:
            continue
        context = {"ec2:CreateAction": call.action, **request_tags(tags)}
        if resource_type == "image":
            context["ec2:Owner"] = current_account()
        out.append(Authorization("ec2:CreateTags", arn, resource_type, context, why=f"tags at {call.action}"))
    return out


# ---------------------------------------------------------------------------------------------
# Builders, by action.
# ---------------------------------------------------------------------------------------------
def wildcard(call: Call) -> list[Authorization]:
    """An action the reference lists no resource type for: authorized on "*"."""
    return [Authorization(call.action, "*", None, {})]


def on_images(param: str) -> Callable[[Call], list[Authorization]]:
    return lambda call: [image(call, i) for i in call.values(param)]


def on_snapshots(param: str) -> Callable[[Call], list[Authorization]]:
    return lambda call: [snapshot(call, s) for s in call.values(param)]


def on_instances(param: str) -> Callable[[Call], list[Authorization]]:
    return lambda call: [instance(call, i) for i in call.values(param)]


def deregister_image(call: Call) -> list[Authorization]:
    image_id = call.value("ImageId") or ""
    out = [image(call, image_id)]
    if (call.value("DeleteAssociatedSnapshots") or "").lower() == "true":
        ami = ec2_backend(call.region).amis.get(image_id)
        for m in ami.block_device_mappings if ami is not None else []:
            snap_id = m.get("Ebs", {}).get("SnapshotId")
            if snap_id:
                a = snapshot(call, snap_id)
                out.append(
                    Authorization(
                        "ec2:DeleteSnapshot", a.resource, "snapshot", a.context, why="DeleteAssociatedSnapshots"
                    )
                )
    return out


def create_image(call: Call) -> list[Authorization]:
    new = new_image(call)
    out = [new, new_snapshot(call), instance(call, call.value("InstanceId") or "")]
    return out + created_tags(
        call, [("image", new.resource), ("snapshot", f"arn:aws:ec2:{call.region}::snapshot/snap-new")]
    )


def register_image(call: Call) -> list[Authorization]:
    new = new_image(call)
    snaps = [v for k, v in call.query if re.match(r"BlockDeviceMapping\.\d+\.Ebs\.SnapshotId$", k)]
    return [new, *(snapshot(call, s) for s in snaps)] + created_tags(call, [("image", new.resource)])


def copy_image(call: Call) -> list[Authorization]:
    new = new_image(call)
    out = [new, new_snapshot(call)]
    out += created_tags(call, [("image", new.resource), ("snapshot", f"arn:aws:ec2:{call.region}::snapshot/snap-new")])
    key = call.value("KmsKeyId")
    if (call.value("Encrypted") or "").lower() == "true" and key:
        out += kms_for_ec2(call, key)
    source_region = call.value("SourceRegion") or call.region
    for source_key in sorted(snapshot_keys(source_region, call.value("SourceImageId") or "")):
        out += kms_for_ec2(
            call, source_key, source_region, ["kms:DescribeKey", "kms:CreateGrant", "kms:Decrypt", "kms:ReEncryptFrom"]
        )
    return out


def snapshot_keys(region: str, image_id: str) -> set[str]:
    """The customer managed keys of an AMI's encrypted snapshots (the AWS managed key needs no
    permission of the caller's)."""
    backend = ec2_backend(region)
    ami = backend.amis.get(image_id)
    keys = set()
    for m in ami.block_device_mappings if ami is not None else []:
        snap = backend.snapshots.get((m.get("Ebs") or {}).get("SnapshotId", ""))
        key = getattr(snap, "kms_key_id", None) if snap is not None and snap.encrypted else None
        if key and not aws_managed(region, key):
            keys.add(key)
    return keys


def aws_managed(region: str, key: str) -> bool:
    from moto.kms.models import kms_backends

    try:
        return kms_backends[current_account()][region].describe_key(key).key_manager == "AWS"
    except Exception:  # noqa: BLE001 - an unknown key is no AWS managed key
        return "alias/aws/" in key


def kms_for_ec2(
    call: Call, key: str, region: str | None = None, actions: list[str] | None = None
) -> list[Authorization]:
    """The KMS calls EC2 makes with the caller's permissions to use `key` for a copy or a launch
    (EC2 User Guide, "How EBS encryption works": kms:ViaService ec2.<region>.amazonaws.com)."""
    region = region or call.region
    arn = key_arn(region, key)
    via = {"kms:ViaService": f"ec2.{region}.amazonaws.com", "kms:CallerAccount": current_account()}
    actions = actions or [
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:Decrypt",
    ]
    out = []
    for action in actions:
        context = dict(via)
        if action == "kms:CreateGrant":
            context["kms:GrantIsForAWSResource"] = "true"
        out.append(
            Authorization(
                action,
                arn,
                "key",
                context,
                resource_policy=key_policy(region, arn),
                why=f"EC2 uses {key} for {call.action}",
            )
        )
    return out


def run_instances(call: Call) -> list[Authorization]:
    region = call.region
    backend = ec2_backend(region)
    image_id = call.value("ImageId") or ""
    out = [image(call, image_id)]
    tags = call.tag_specifications("instance")
    tokens = call.value("MetadataOptions.HttpTokens") or "optional"
    instance_type = call.value("InstanceType") or "m1.small"
    subnet_id = call.value("SubnetId") or call.value("NetworkInterface.1.SubnetId") or ""
    az, vpc = "", ""
    try:
        subnet = backend.get_subnet(subnet_id)
        az, vpc = subnet.availability_zone, subnet.vpc_id
    except Exception:  # noqa: BLE001 - no such subnet: EC2 answers for it
        pass
    profile = call.value("IamInstanceProfile.Arn") or call.value("IamInstanceProfile.Name")
    new_instance = {
        "ec2:InstanceType": instance_type,
        "ec2:MetadataHttpTokens": tokens,
        "ec2:RootDeviceType": "ebs",
        "ec2:Tenancy": "default",
        "ec2:AvailabilityZone": az,
        **request_tags(tags),
    }
    if profile:
        new_instance["ec2:InstanceProfile"] = (
            profile if profile.startswith("arn:") else f"arn:aws:iam::{current_account()}:instance-profile/{profile}"
        )
    out.append(
        Authorization(
            call.action,
            f"arn:aws:ec2:{region}:{current_account()}:instance/i-0new",
            "instance",
            new_instance,
            why="the test instance",
        )
    )
    vpc_arn = f"arn:aws:ec2:{region}:{current_account()}:vpc/{vpc}" if vpc else ""
    subnet_arn = f"arn:aws:ec2:{region}:{current_account()}:subnet/{subnet_id}"
    out.append(
        Authorization(
            call.action,
            subnet_arn,
            "subnet",
            {
                "ec2:SubnetID": subnet_id,
                "ec2:Vpc": vpc_arn,
                "ec2:AvailabilityZone": az,
                **resource_tags(region, subnet_id),
            },
        )
    )
    out.append(
        Authorization(
            call.action,
            f"arn:aws:ec2:{region}:{current_account()}:network-interface/eni-0new",
            "network-interface",
            {
                "ec2:Subnet": subnet_arn,
                "ec2:Vpc": vpc_arn,
                "ec2:AvailabilityZone": az,
                **request_tags(call.tag_specifications("network-interface")),
            },
            why="its network interface",
        )
    )
    groups = call.values("SecurityGroupId") or call.values("NetworkInterface.1.SecurityGroupId")
    for group in groups:
        out.append(
            Authorization(
                call.action,
                f"arn:aws:ec2:{region}:{current_account()}:security-group/{group}",
                "security-group",
                {"ec2:SecurityGroupID": group, "ec2:Vpc": vpc_arn, **resource_tags(region, group)},
            )
        )
    out += volumes(call, image_id, az)
    for key in sorted(snapshot_keys(region, image_id)):
        out += kms_for_ec2(call, key)
    out += created_tags(
        call,
        [
            (t, f"arn:aws:ec2:{region}:{current_account()}:{t}/{NEW_IDS.get(t, 'new')}")
            for t in sorted(call.tag_types())
        ],
    )
    if profile:
        out += pass_role_for_profile(call, profile)
    return out


def volumes(call: Call, image_id: str, az: str) -> list[Authorization]:
    """One authorization per volume the launch makes: the AMI's mappings, with the request's
    overrides (BlockDeviceMapping.N)."""
    region = call.region
    ami = ec2_backend(region).amis.get(image_id)
    mappings: dict[str, dict[str, Any]] = {}
    for m in ami.block_device_mappings if ami is not None else []:
        ebs = m.get("Ebs") or {}
        mappings[m.get("DeviceName", "")] = {
            "size": ebs.get("VolumeSize"),
            "encrypted": ebs.get("Encrypted"),
            "snapshot": ebs.get("SnapshotId"),
            "type": ebs.get("VolumeType"),
        }
    requested: dict[str, dict[str, Any]] = {}
    for k, v in call.query:
        m = re.match(
            r"BlockDeviceMapping\.(\d+)\.(DeviceName|Ebs\.VolumeSize|Ebs\.Encrypted|Ebs\.VolumeType|NoDevice)$", k
        )
        if m:
            requested.setdefault(m.group(1), {})[m.group(2)] = v
    for spec in requested.values():
        device = spec.get("DeviceName", "")
        if "NoDevice" in spec:
            mappings.pop(device, None)
            continue
        entry = mappings.setdefault(device, {})
        entry["size"] = spec.get("Ebs.VolumeSize", entry.get("size"))
        entry["encrypted"] = spec.get("Ebs.Encrypted", entry.get("encrypted"))
        entry["type"] = spec.get("Ebs.VolumeType", entry.get("type"))
    tags = request_tags(call.tag_specifications("volume"))
    out = []
    for device, entry in sorted(mappings.items()):
        context: dict[str, Any] = {
            "ec2:AvailabilityZone": az,
            "ec2:VolumeType": str(entry.get("type") or "gp3"),
            "ec2:Encrypted": str(entry.get("encrypted") or "false").lower(),
            **tags,
        }
        if entry.get("size"):
            context["ec2:VolumeSize"] = str(entry["size"])
        if entry.get("snapshot"):
            context["ec2:ParentSnapshot"] = f"arn:aws:ec2:{region}::snapshot/{entry['snapshot']}"
        out.append(
            Authorization(
                call.action,
                f"arn:aws:ec2:{region}:{current_account()}:volume/vol-0new",
                "volume",
                context,
                why=f"the volume of {device}",
            )
        )
    return out


def pass_role_for_profile(call: Call, profile: str) -> list[Authorization]:
    """iam:PassRole on the role of the instance profile (EC2 User Guide, "IAM role for
    instances": the caller passes the profile's role to EC2)."""
    role = roles().deployment().parameter("ValidationInstanceRoleArn")
    try:
        from moto.iam.models import iam_backends

        name = profile.rsplit("/", 1)[-1]
        found = iam_backends[current_account()]["global"].get_instance_profile(name)
        role = found.roles[0].arn if found.roles else role
    except Exception:  # noqa: BLE001 - no such profile in the emulator: the deployed role
        pass
    return [
        Authorization(
            "iam:PassRole",
            role or f"arn:aws:iam::{current_account()}:role/unknown",
            "role",
            {"iam:PassedToService": "ec2.amazonaws.com"},
            why=f"the role of {profile}",
        )
    ]


def create_launch_template_version(call: Call) -> list[Authorization]:
    return [launch_template(call, call.value("LaunchTemplateId"), call.value("LaunchTemplateName"))]


def modify_image_attribute(call: Call) -> list[Authorization]:
    a = image(call, call.value("ImageId") or "")
    attribute = call.value("Attribute") or (
        "launchPermission" if any(k.startswith("LaunchPermission") for k, _ in call.query) else ""
    )
    if attribute:
        a.context["ec2:Attribute"] = attribute
    return [a]


def modify_snapshot_attribute(call: Call) -> list[Authorization]:
    a = snapshot(call, call.value("SnapshotId") or "")
    a.context["ec2:Attribute"] = call.value("Attribute") or "createVolumePermission"
    adds = [v for k, v in call.query if re.match(r"CreateVolumePermission\.Add\.\d+\.UserId$", k)]
    removes = [v for k, v in call.query if re.match(r"CreateVolumePermission\.Remove\.\d+\.UserId$", k)]
    if adds:
        a.context["ec2:Add/userId"] = adds
    if removes:
        a.context["ec2:Remove/userId"] = removes
    return [a]


def tags_on(call: Call) -> list[Authorization]:
    """CreateTags and DeleteTags called directly (no ec2:CreateAction)."""
    tags = call.tags()
    out = []
    for resource_id in call.values("ResourceId"):
        if resource_id.startswith("ami-"):
            a = image(call, resource_id)
        elif resource_id.startswith("snap-"):
            a = snapshot(call, resource_id)
        elif resource_id.startswith("i-"):
            a = instance(call, resource_id)
        elif resource_id.startswith("lt-"):
            a = launch_template(call, resource_id, None)
        else:
            a = Authorization(
                call.action, f"arn:aws:ec2:{call.region}:{current_account()}:unknown/{resource_id}", None, {}
            )
        a.context.update({**tag_keys("aws:RequestTag", tags), "aws:TagKeys": sorted(tags)} if tags else {})
        out.append(a)
    return out


# What DescribeImageReferences reads with the caller's permissions, per resource type asked
# (EC2 User Guide, "Identify your resources referencing specified AMIs"; the managed policy
# AmazonEC2ImageReferencesAccessPolicy), through EC2 (`aws:CalledVia` ec2-images.amazonaws.com).
REFERENCE_READS = {
    "ec2:Instance": ["ec2:DescribeInstances"],
    "ec2:LaunchTemplate": ["ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions"],
    "ssm:Parameter": ["ssm:DescribeParameters", "ssm:GetParameters"],
    "imagebuilder:ImageRecipe": ["imagebuilder:ListImageRecipes"],
    "imagebuilder:ContainerRecipe": ["imagebuilder:ListContainerRecipes", "imagebuilder:GetContainerRecipe"],
}


def image_references(call: Call) -> list[Authorization]:
    kinds = [v for k, v in call.query if re.match(r"ResourceType\.\d+\.ResourceType$", k)] or list(REFERENCE_READS)
    out = [Authorization(call.action, "*", None, {})]
    for kind in kinds:
        for action in REFERENCE_READS.get(kind, []):
            via = {} if action.startswith("ec2:") else {"aws:CalledVia": ["ec2-images.amazonaws.com"]}
            out.append(Authorization(action, "*", None, via, why=f"DescribeImageReferences reads {kind}"))
    return out


def usage_report(call: Call) -> list[Authorization]:
    new = Authorization(
        call.action,
        f"arn:aws:ec2:{call.region}:{current_account()}:image-usage-report/amiur-0new",
        "image-usage-report",
        request_tags(call.tag_specifications("image-usage-report")),
    )
    return [image(call, call.value("ImageId") or ""), new]


# ---------------------------------------------------------------------------------------------
# JSON and REST services.
# ---------------------------------------------------------------------------------------------
def key_arn(region: str, key: str) -> str:
    from moto.kms.models import kms_backends

    backend = kms_backends[current_account()][region]
    try:
        found = backend.describe_key(key)
        return found.arn
    except Exception:  # noqa: BLE001 - an unknown key: KMS answers NotFound, not IAM
        if key.startswith("arn:"):
            return key.replace("alias/", "alias/") if ":alias/" in key else key
        return f"arn:aws:kms:{region}:{current_account()}:key/{key}"


def key_policy(region: str, arn: str) -> dict[str, Any] | None:
    """The key policy KMS evaluates with the caller's identity policy."""
    import json

    from moto.kms.models import kms_backends

    try:
        found = kms_backends[current_account()][region].describe_key(arn)
        return json.loads(found.policy) if found.policy else None
    except Exception:  # noqa: BLE001
        return None


def kms(call: Call) -> list[Authorization]:
    key = call.document.get("KeyId", "")
    arn = key_arn(call.region, key)
    context: dict[str, Any] = {"kms:CallerAccount": current_account()}
    if call.action == "CreateGrant":
        context["kms:GrantOperations"] = call.document.get("Operations", [])
        if call.document.get("GranteePrincipal"):
            context["kms:GranteePrincipal"] = call.document["GranteePrincipal"]
        if call.document.get("RetiringPrincipal"):
            context["kms:RetiringPrincipal"] = call.document["RetiringPrincipal"]
    if call.action in ("GenerateMac", "VerifyMac"):
        context["kms:MacAlgorithm"] = call.document.get("MacAlgorithm", "")
    return [Authorization(f"kms:{call.action}", arn, "key", context, resource_policy=key_policy(call.region, arn))]


def ssm_parameter(call: Call) -> list[Authorization]:
    name = call.document.get("Name", "").lstrip("/")
    context: dict[str, Any] = {}
    if call.action == "PutParameter":
        context["ssm:Overwrite"] = "true" if call.document.get("Overwrite") else "false"
        tags = {t["Key"]: t.get("Value", "") for t in call.document.get("Tags", [])}
        context.update(request_tags(tags))
    arn = f"arn:aws:ssm:{call.region}:{current_account()}:parameter/{name}"
    out = [Authorization(f"ssm:{call.action}", arn, "parameter", context)]
    if call.action == "PutParameter" and call.document.get("DataType") == "aws:ec2:image":
        # SSM validates the AMI with the caller's permissions (SSM User Guide, "Native parameter
        # support for Amazon Machine Image IDs").
        out.append(
            Authorization(
                "ec2:DescribeImages", "*", None, {"aws:CalledVia": ["ssm.amazonaws.com"]}, why="SSM validates the AMI"
            )
        )
    return out


def put_events(call: Call) -> list[Authorization]:
    out = []
    for entry in call.document.get("Entries", []):
        bus = entry.get("EventBusName") or "default"
        arn = bus if bus.startswith("arn:") else f"arn:aws:events:{call.region}:{current_account()}:event-bus/{bus}"
        context = {"events:source": entry.get("Source", ""), "events:detail-type": entry.get("DetailType", "")}
        policy = roles().resource_policy("ToolBusPolicy") if bus_is_tool_bus(arn) else None
        out.append(Authorization("events:PutEvents", arn, "event-bus", context, resource_policy=policy))
    return out


def bus_is_tool_bus(arn: str) -> bool:
    deployment = roles().deployment()
    if not deployment.condition("CreateBus"):
        return False
    return arn.endswith("/" + str(deployment.attribute("ToolBus", "Ref")))


def sqs(call: Call) -> list[Authorization]:
    url = call.document.get("QueueUrl", "")
    name = url.rstrip("/").rsplit("/", 1)[-1]
    arn = f"arn:aws:sqs:{call.region}:{current_account()}:{name}"
    policy = None
    if name == str(roles().deployment().attribute("EventOutbox", "QueueName")):
        policy = roles().resource_policy("EventOutboxPolicy")
    elif name == str(roles().deployment().attribute("DistributeQueue", "QueueName")):
        policy = roles().resource_policy("DistributeQueuePolicy")
    # SendMessageBatch is authorized as sqs:SendMessage (SQS Developer Guide, "Amazon SQS API
    # permissions: Actions and resource reference").
    action = "SendMessage" if call.action == "SendMessageBatch" else call.action
    return [Authorization(f"sqs:{action}", arn, "queue", {}, resource_policy=policy)]


def assume_role(call: Call) -> list[Authorization]:
    """sts:AssumeRole on the role, and sts:TagSession with session tags (STS API reference,
    AssumeRole; IAM User Guide, "Passing session tags in AWS STS"): each authorized by the
    caller's identity policy and the role's trust policy (a cross-account request needs both).
    A role that does not exist in its account has no trust policy: nothing allows it."""
    from testbed import accounts

    arn = call.value("RoleArn") or ""
    account = arn.split(":")[4] if arn.count(":") >= 5 else ""
    target = accounts.target_role(account)
    if target and target["arn"] != arn:
        target = None
    reader = accounts.READERS.get(arn)
    trust = target["trust"] if target else reader or {"Version": "2012-10-17", "Statement": []}
    numbers = sorted({m.group(1) for k, _ in call.query if (m := re.match(r"Tags\.member\.(\d+)\.Key$", k))})
    pairs = {call.value(f"Tags.member.{n}.Key") or "": call.value(f"Tags.member.{n}.Value") or "" for n in numbers}
    context: dict[str, Any] = {"sts:RoleSessionName": call.value("RoleSessionName") or ""}
    if call.value("ExternalId") is not None:
        context["sts:ExternalId"] = call.value("ExternalId")
    why = "" if target or reader else f"no role {arn} in account {account}"
    out = [Authorization("sts:AssumeRole", arn, "role", context, resource_policy=trust, why=why)]
    if pairs:
        tagged = {**context, **request_tags(pairs)}
        out.append(Authorization("sts:TagSession", arn, "role", tagged, resource_policy=trust, why=why))
    return out


def scheduler(call: Call) -> list[Authorization]:
    parts = call.path.strip("/").split("/")
    name = parts[1] if len(parts) > 1 else ""
    group = call.document.get("GroupName") or call.value("groupName") or "default"
    arn = f"arn:aws:scheduler:{call.region}:{current_account()}:schedule/{group}/{name}"
    out = [Authorization(f"scheduler:{call.action}", arn, "schedule", {})]
    role = (call.document.get("Target") or {}).get("RoleArn")
    if call.action == "CreateSchedule" and role:
        out.append(
            Authorization(
                "iam:PassRole",
                role,
                "role",
                {"iam:PassedToService": "scheduler.amazonaws.com"},
                why="the schedule's target role",
            )
        )
    return out


def organizations(call: Call) -> list[Authorization]:
    # Authorized against "*": the Service Authorization Reference lists no required resource
    # for ListAccountsForParent or ListParents.
    return [Authorization(f"organizations:{call.action}", "*", None, {})]


def rbin(call: Call) -> list[Authorization]:
    if call.action == "GetRule":
        identifier = call.path.rstrip("/").rsplit("/", 1)[-1]
        return [
            Authorization(
                "rbin:GetRule", f"arn:aws:rbin:{call.region}:{current_account()}:rule/{identifier}", "rule", {}
            )
        ]
    return [Authorization(f"rbin:{call.action}", "*", None, {})]


EC2: dict[str, Callable[[Call], list[Authorization]]] = {
    **{
        a: wildcard
        for a in (
            "DescribeImages",
            "DescribeSnapshots",
            "DescribeInstances",
            "DescribeLaunchTemplates",
            "DescribeLaunchTemplateVersions",
            "DescribeImageUsageReports",
            "DescribeImageUsageReportEntries",
            "ListImagesInRecycleBin",
            "ListSnapshotsInRecycleBin",
            "DescribeInstanceStatus",
            "DescribeInstanceTypes",
            "DescribeSecurityGroups",
            "GetImageBlockPublicAccessState",
            "DescribeSubnets",
            "DescribeVpcs",
        )
    },
    "DescribeImageReferences": image_references,
    "DescribeImageAttribute": on_images("ImageId"),
    "DescribeSnapshotAttribute": on_snapshots("SnapshotId"),
    "DeregisterImage": deregister_image,
    "DisableImage": on_images("ImageId"),
    "EnableImage": on_images("ImageId"),
    "EnableImageDeprecation": on_images("ImageId"),
    "DisableImageDeprecation": on_images("ImageId"),
    "EnableImageDeregistrationProtection": on_images("ImageId"),
    "DisableImageDeregistrationProtection": on_images("ImageId"),
    "RestoreImageFromRecycleBin": on_images("ImageId"),
    "RestoreSnapshotFromRecycleBin": on_snapshots("SnapshotId"),
    "DeleteSnapshot": on_snapshots("SnapshotId"),
    "ModifyImageAttribute": modify_image_attribute,
    "ModifySnapshotAttribute": modify_snapshot_attribute,
    "CreateImage": create_image,
    "RegisterImage": register_image,
    "CopyImage": copy_image,
    "RunInstances": run_instances,
    "TerminateInstances": on_instances("InstanceId"),
    "GetConsoleOutput": on_instances("InstanceId"),
    "CreateLaunchTemplateVersion": create_launch_template_version,
    "ModifyLaunchTemplate": create_launch_template_version,
    "CreateTags": tags_on,
    "DeleteTags": tags_on,
    "CreateImageUsageReport": usage_report,
}

OTHERS: dict[str, Callable[[Call], list[Authorization]]] = {
    **{
        f"kms:{a}": kms
        for a in (
            "DescribeKey",
            "GetKeyPolicy",
            "ListGrants",
            "CreateGrant",
            "RetireGrant",
            "GenerateMac",
            "VerifyMac",
            "Decrypt",
            "Encrypt",
        )
    },
    "ssm:GetParameter": ssm_parameter,
    "ssm:PutParameter": ssm_parameter,
    "events:PutEvents": put_events,
    **{
        f"sqs:{a}": sqs
        for a in ("SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
    },
    "sts:AssumeRole": assume_role,
    "organizations:ListAccountsForParent": organizations,
    "organizations:ListParents": organizations,
    "scheduler:CreateSchedule": scheduler,
    "scheduler:DeleteSchedule": scheduler,
    "rbin:ListRules": rbin,
    "rbin:GetRule": rbin,
}


def requests_for(call: Call) -> list[Authorization] | None:
    """The authorizations of a call, each with its action set; None when no builder knows it."""
    if call.service == "ec2":
        builder = EC2.get(call.action)
        if builder is None:
            return None
        found = builder(call)
        for a in found:
            if ":" not in a.action:
                a.action = f"ec2:{a.action}"
        return found
    builder = OTHERS.get(f"{call.service}:{call.action}")
    return builder(call) if builder is not None else None
