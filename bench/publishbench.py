"""Publish: what one `ami-publish` sweep costs over a region with many AMIs (issue 17).

Seeds N AMIs (ten families, every one past its launch test, its verdict sealed) straight into
the test bed's backend, a launch template per family, then runs the real `ami-publish` binary: a first sweep
(publishes each family's newest AMI to its SSM parameter and launch template) and a second one
(the steady state every 5 minutes: nothing to change). Reports each sweep's wall time, API
requests by action and the function's peak RSS.

Run with `cargo build --release --bins && AMI_PROFILE=release scripts/bench-publish [--amis 10000]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from harness import Emulator, Function  # noqa: E402

FAMILIES = 10


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amis", type=int, default=10_000)
    args = parser.parse_args()
    with Emulator() as emu:
        ec2 = emu.ec2("us-east-1")
        builder = ec2.run_instances(ImageId="ami-0a1b2c3d4e5f60001", MinCount=1, MaxCount=1, InstanceType="t3.micro")[
            "Instances"
        ][0]["InstanceId"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(VpcId=vpc, GroupName="t", Description="t")["GroupId"]
        t = time.perf_counter()
        seeded = emu.seed_fleet("us-east-1", builder, args.amis, families=FAMILIES, tags={"Bench": "yes"})
        # Every one passed its launch test: a sealed verdict, as ami-publish writes it (the gate
        # accepts no other), so the first sweep checks each seal once.
        pages = ec2.get_paginator("describe_images").paginate(
            Owners=["self"], Filters=[{"Name": "tag:Bench", "Values": ["yes"]}]
        )
        for image in (i for page in pages for i in page["Images"]):
            emu.pass_image("us-east-1", image["ImageId"], "fleet")
        for n in range(FAMILIES):
            ec2.create_launch_template(
                LaunchTemplateName=f"servers-f{n}", LaunchTemplateData={"ImageId": "ami-0a1b2c3d4e5f60001"}
            )
        print(f"seeded {seeded} AMIs and {FAMILIES} launch templates in {time.perf_counter() - t:.0f} s", flush=True)
        policy = {
            "dry_run": False,
            "policies": [
                {
                    "name": "fleet",
                    "select": {"tags": {"Bench": "*"}},
                    "family_by": "tag:Family",
                    "validate": {"instance_type": "t3.micro", "subnet_id": subnet, "security_group_ids": [group]},
                    "publish": {
                        "ssm_parameters": ["/ami/{policy}/{family}"],
                        "launch_templates": [
                            {"template": f"servers-f{n}", "family": f"f{n}", "set_default": True}
                            for n in range(FAMILIES)
                        ],
                    },
                }
            ],
        }
        path = Path(tempfile.mkdtemp()) / "policy.json"
        path.write_text(json.dumps(policy))
        with Function(
            emu, "ami-publish", path, {"AMI_CALL_TIMEOUT_MS": "900000", "AMI_DEADLINE_MARGIN_MS": "900000"}
        ) as function:
            for label in ("first sweep", "steady-state sweep"):
                before = emu.calls()
                t = time.perf_counter()
                ok, report = function.invoke({})
                wall = time.perf_counter() - t
                if not ok:
                    print(f"failed: {str(report)[:2000]}")
                    return 1
                after = emu.calls()
                used = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
                print(
                    f"{args.amis} AMIs, {label}: {wall:.2f} s, {sum(used.values())} requests, "
                    f"outcomes {json.dumps(report['counts'], sort_keys=True)}"
                )
                print(f"    requests by action: {json.dumps(used, sort_keys=True)}")
            print(f"    peak RSS {function.peak_rss_kb() / 1024:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
