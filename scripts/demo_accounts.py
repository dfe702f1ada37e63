"""The demo's last stage, across accounts: `ami-distribute` serves two target accounts (each its
own moto account, reached through target-role.yaml's role with the ExternalId): one gets its own
encrypted copy and an SSM parameter naming it, the other an SSM parameter and a launch template
(opted in with the tag `ami-automation:publish`) naming the shared AMI. A newer AMI replaces the
first; once its source is deregistered, the first copy is retired in the target: deprecated
while the source account's Recycle Bin can still restore its source (the demo's account keeps
deregistered AMIs there), deregistered once the bin releases it. Every unit goes through the
distribution queue, as Lambda's SQS event source delivers it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from harness import Emulator, Function, deliver_units

COPYING, SHARING = "111111111111", "222222222222"
PARAMETER = "/ami/golden/base"
TEMPLATE = "golden-web"
DOCUMENT = {
    "dry_run": False,
    "policies": [
        {
            "name": "golden",
            "select": {"tags": {"Team": "golden"}},
            "family_by": "tag:Family",
            "share": {"accounts": [COPYING, SHARING], "snapshots": True},
            "distribute": {
                "targets": [
                    {"accounts": [COPYING], "copy": {}, "ssm_parameters": ["/ami/golden/{family}"]},
                    {
                        "accounts": [SHARING],
                        "ssm_parameters": ["/ami/golden/{family}"],
                        "launch_templates": [{"template": TEMPLATE, "set_default": True}],
                    },
                ]
            },
        }
    ],
}


def in_account(emu: Emulator, account: str, service: str) -> Any:
    """A client of an administrator of `account` (the demo's own look into a target account)."""
    import boto3

    creds = emu.client("sts", "us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/demo-administrator", RoleSessionName="demo"
    )["Credentials"]
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=emu.endpoint,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def sweep(emu: Emulator, function: Function, title: str, names: dict[str, str], table: Callable) -> list[dict]:
    ok, queued = function.invoke({})
    if not ok:
        raise RuntimeError(f"the sweep failed: {queued}")
    lines = [line for report, _ in deliver_units(emu, function) for line in report["results"]]
    rows = [
        [
            line["account"],
            line["action"],
            names.get(line.get("source_image_id", ""), line.get("source_image_id", "-")),
            line.get("image_id", "-"),
            line.get("parameter") or line.get("launch_template", "-"),
            line["outcome"],
            line.get("reason", ""),
        ]
        for line in lines
    ]
    table(
        f"== {title}: {len(queued['results'])} units queued, served from the queue ==",
        ["account", "action", "source", "in the account", "parameter / template", "outcome", "reason"],
        rows,
    )
    return lines


def image(emu: Emulator, base: str, name: str) -> str:
    ec2 = emu.ec2("us-east-1")
    builder = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    instance = builder["Instances"][0]["InstanceId"]
    tags = [{"Key": "Team", "Value": "golden"}, {"Key": "Family", "Value": "base"}]
    return ec2.create_image(
        InstanceId=instance, Name=name, TagSpecifications=[{"ResourceType": "image", "Tags": tags}]
    )["ImageId"]


def distribute(emu: Emulator, base: str, table: Callable) -> int:
    """Runs the stage; 0 when the target accounts end as the reports say."""
    document = Path(tempfile.mkdtemp(prefix="ami-demo-accounts-")) / "policies.json"
    document.write_text(json.dumps(DOCUMENT))
    emu._post("accounts", {"accounts": [COPYING, SHARING]})
    in_account(emu, SHARING, "ec2").create_launch_template(
        LaunchTemplateName=TEMPLATE,
        LaunchTemplateData={"InstanceType": "t3.micro"},
        TagSpecifications=[
            {"ResourceType": "launch-template", "Tags": [{"Key": "ami-automation:publish", "Value": "true"}]}
        ],
    )
    first = image(emu, base, "golden-base-20261201")
    # Made a day earlier than the AMI that replaces it: "newest" never depends on which of two
    # images made within the same second EC2 lists first.
    emu.seed("us-east-1", first, creation_date="2026-12-01T00:00:00.000Z")
    names = {first: "golden-base-20261201"}
    functions = [Function(emu, "ami-share", document), Function(emu, "ami-distribute", document)]
    share, distributor = functions
    try:
        share.invoke({})
        sweep(emu, distributor, "distribute (new AMI)", names, table)
        sweep(emu, distributor, "distribute (next sweep: the copy is available)", names, table)
        first_copy = in_account(emu, COPYING, "ssm").get_parameter(Name=PARAMETER)["Parameter"]["Value"]

        second = image(emu, base, "golden-base-20261205")
        names[second] = "golden-base-20261205"
        share.invoke({})
        sweep(emu, distributor, "distribute (a newer AMI)", names, table)
        sweep(emu, distributor, "distribute (next sweep)", names, table)
        emu.ec2("us-east-1").deregister_image(ImageId=first)
        retired = sweep(emu, distributor, f"distribute ({names[first]} deregistered at the source)", names, table)
    finally:
        for f in functions:
            f.stop()

    ec2 = in_account(emu, COPYING, "ec2")
    owned = ec2.describe_images(Owners=["self"])["Images"]
    left = [i["ImageId"] for i in owned]
    deprecated = [i["ImageId"] for i in owned if i.get("DeprecationTime")]
    params = {
        a: in_account(emu, a, "ssm").get_parameter(Name=PARAMETER)["Parameter"]["Value"] for a in (COPYING, SHARING)
    }
    default = in_account(emu, SHARING, "ec2").describe_launch_template_versions(
        LaunchTemplateName=TEMPLATE, Versions=["$Default"]
    )["LaunchTemplateVersions"][0]
    template_image = default["LaunchTemplateData"].get("ImageId")
    print(
        f"\n  {COPYING} owns {len(left)} copies ({', '.join(left)}; deprecated: {', '.join(deprecated) or 'none'}), "
        f"{PARAMETER} = {params[COPYING]}; "
        f"{SHARING} owns none, {PARAMETER} = {names.get(params[SHARING], params[SHARING])} (shared), "
        f"launch template {TEMPLATE} default version {default['VersionNumber']} = "
        f"{names.get(template_image or '', template_image)}"
    )
    ok = (
        any(line["action"] == "retire" and line["outcome"] == "retired" for line in retired)
        and deprecated == [first_copy]
        and len(left) == 2
        and params[COPYING] in left
        and params[COPYING] != first_copy
        and params[SHARING] == second
        and template_image == second
    )
    if not ok:
        print("FAILED: the target accounts do not end as the reports say")
    return 0 if ok else 1
