"""The main job, locally: a realistic account on the local EC2 emulator; the real `ami-build`
binary images the tagged instances (twice: the re-delivery creates nothing), `ami-publish`
launch-tests the new AMIs (one boots, one never shows its login prompt and fails at its
timeout), `ami-share` and `ami-copy` act on the one that passed only, `ami-publish` points the
SSM parameter and the launch template at it and then rolls back, then `ami-age-out` retires what
is past retention, first as a dry run, then for real (with what it saved), and finally gives one
AMI back from the Recycle Bin with a restore request; all driven through the Lambda runtime API
(cargo lambda). Prints what happened and exits non-zero if anything failed or the account does
not end as the reports say. Leaves nothing running.

Run it with `scripts/demo` (which builds the function and sets up the test bed first).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
import demo_accounts  # noqa: E402
from harness import FUNCTIONS, ROOT, Emulator, Function, binary  # noqa: E402

EXAMPLE_POLICIES = ROOT / "examples" / "policies.json"
# The example document says dry_run: true (the safe default). The demo acts on the events it
# delivers, so it runs a copy with dry_run: false; age-out still gets an explicit dry run first.
POLICIES = Path(tempfile.mkdtemp(prefix="ami-demo-")) / "policies.json"
REGIONS = ["us-east-1", "eu-west-1"]
BASE_AMI = "ami-0a1b2c3d4e5f60001"
NOW = datetime.now(timezone.utc)


def seed_account(emu: Emulator) -> dict[str, str]:
    """Two families in us-east-1 (tag Family=web-*), a batch family in eu-west-1 (by name), an
    instance and a launch template using old AMIs, a protected AMI, a decoy tag; the network the
    launch tests run in, and the launch template the web-frontend family is published to. The
    AMIs in service before the tool came passed their launch tests long ago."""
    names: dict[str, str] = {}
    # The copies to eu-west-1 are encrypted with the customer managed key the example policy
    # names (a policy that shares may not copy onto the AWS managed key: it cannot be shared).
    kms = emu.client("kms", "eu-west-1")
    created = kms.create_key(Description="AMI copies")["KeyMetadata"]
    key = created["KeyId"]
    kms.create_alias(AliasName="alias/ami-copies", TargetKeyId=key)
    # The stack is deployed with that key as the copies' key (its role may use no other).
    emu._post("deploy", {"parameters": {"CopyKmsKeyArns": created["Arn"]}})
    ec2 = emu.ec2("us-east-1")
    builder = ec2.run_instances(
        ImageId=BASE_AMI,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}},
            {"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 20}},
        ],
    )["Instances"][0]["InstanceId"]
    fleet = [
        ("web-frontend", 2),
        ("web-frontend", 9),
        ("web-frontend", 20),
        ("web-frontend", 45),
        ("web-frontend", 75),
        ("web-frontend", 120),
        ("web-frontend", 150),
        ("web-frontend", 200),
        ("web-api", 1),
        ("web-api", 35),
        ("web-api", 95),
        ("web-api", 130),
    ]
    for family, days in fleet:
        created = NOW - timedelta(days=days)
        name = f"{family}-{created:%Y%m%dT%H%M%SZ}"
        tags = [{"Key": "Family", "Value": family}]
        if (family, days) == ("web-frontend", 150):
            tags.append({"Key": "Retain", "Value": "true"})
        if (family, days) == ("web-api", 130):
            tags.append({"Key": "Retain", "Value": "false"})
        image = ec2.create_image(
            InstanceId=builder,
            Name=name,
            NoReboot=True,
            TagSpecifications=[{"ResourceType": "image", "Tags": tags}],
        )["ImageId"]
        emu.seed("us-east-1", image, creation_date=created.isoformat())
        # They passed their launch tests long ago: sealed verdicts, as ami-publish writes them.
        emu.pass_image("us-east-1", image, "web")
        names[image] = name
    by_name = {v: k for k, v in names.items()}
    old_running = next(
        i
        for i, n in names.items()
        if n.startswith("web-frontend") and (NOW - timedelta(days=120)).strftime("%Y%m%d") in n
    )
    ec2.run_instances(ImageId=old_running, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    # The instances the build stage images (tag ami-automation:build=web).
    for family in ("web-frontend", "web-api"):
        ec2.run_instances(
            ImageId=BASE_AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": "ami-automation:build", "Value": "web"}, {"Key": "Family", "Value": family}],
                }
            ],
        )
    old_template = next(
        i for i, n in names.items() if n.startswith("web-api") and (NOW - timedelta(days=95)).strftime("%Y%m%d") in n
    )
    ec2.create_launch_template(LaunchTemplateName="web-api", LaunchTemplateData={"ImageId": old_template})
    del by_name
    # The launch tests' network, and the template consumers launch web-frontend from (it opts in
    # to publishing with the tag ami-automation:publish).
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(VpcId=vpc, GroupName="ami-validation", Description="launch tests")["GroupId"]
    # The stack is deployed with that network for the launch tests (its role allows no other).
    emu._post("deploy", {"parameters": {"ValidationSubnetId": subnet, "ValidationSecurityGroupIds": [group]}})
    document = {**json.loads(EXAMPLE_POLICIES.read_text()), "dry_run": False}
    web = document["policies"][0]
    web["validate"] = {**web["validate"], "subnet_id": subnet, "security_group_ids": [group]}
    POLICIES.write_text(json.dumps(document))
    ec2.create_launch_template(
        LaunchTemplateName="web-frontend-servers",
        LaunchTemplateData={"ImageId": BASE_AMI, "InstanceType": "t3.small"},
        TagSpecifications=[
            {"ResourceType": "launch-template", "Tags": [{"Key": "ami-automation:publish", "Value": "web"}]}
        ],
    )

    eu = emu.ec2("eu-west-1")
    eu_builder = eu.run_instances(ImageId=BASE_AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0][
        "InstanceId"
    ]
    for days in (3, 20, 40, 70):
        created = NOW - timedelta(days=days)
        name = f"batch-{created:%Y%m%d}"
        image = eu.create_image(InstanceId=eu_builder, Name=name, NoReboot=True)["ImageId"]
        emu.seed("eu-west-1", image, creation_date=created.isoformat())
        names[image] = name
    return names


def tag_of(ec2, image_id: str, key: str) -> str:
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return next((t["Value"] for t in image.get("Tags", []) if t["Key"] == key), "")


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (none)")
        return
    widths = [max(len(h), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def show(stage: str, report: dict, names: dict[str, str], elapsed: float) -> None:
    rows = []
    for a in report["plan"]:
        target = a.get("snapshot_id") or a.get("image_id")
        rows.append(
            [
                names.get(a.get("image_id", ""), "") or target,
                a.get("family") or "",
                a["region"],
                a["action"],
                a["outcome"],
                a["reason"],
            ]
        )
    table(
        f"== {stage}: actions ({len(rows)}) ==",
        ["image/snapshot", "family", "region", "action", "outcome", "reason"],
        rows,
    )
    kept = [
        [names.get(k["image_id"], k["image_id"]), k["family"], r["region"], "keep", k["reason"], k.get("detail", "")]
        for r in report["regions"]
        for k in r["kept"]
    ]
    table(f"== {stage}: kept ({len(kept)}) ==", ["image", "family", "region", "action", "reason", "detail"], kept)
    c = report["counts"]
    print(
        f"\n  totals: planned {c.get('planned', 0)}, kept {c.get('kept', 0)}, failed {len(report['failed'])}, "
        f"remaining {report['remaining']}, complete {report['complete']}, {elapsed * 1000:.0f} ms"
    )
    saved = report["saved"]
    verb = "would free" if report["dry_run"] else "freed"
    label = " (volume sizes: an upper bound)" if saved["estimated"] else ""
    print(
        f"  saving: {verb} {saved['gib']:.0f} GiB of snapshots{label}, about ${saved['monthly_usd']:.2f} a month "
        f"at ${saved['price_per_gb_month']}/GB-month"
    )


def main() -> int:
    for name in FUNCTIONS:
        if not binary(name).exists():
            print(f"{binary(name)} is not built: run scripts/demo", file=sys.stderr)
            return 2
    emu = Emulator()
    functions: list[Function] = []
    try:
        t = time.time()
        names = seed_account(emu)
        print(
            f"Seeded {len(names)} AMIs in {', '.join(REGIONS)} in {time.time() - t:.1f} s "
            f"(policies: {EXAMPLE_POLICIES.relative_to(ROOT)} with dry_run false)"
        )
        build = Function(emu, "ami-build", POLICIES)
        functions.append(build)
        t = time.time()
        ok, built = build.invoke({"regions": REGIONS})
        if not ok:
            print(f"build failed:\n{built}")
            return 1
        table(
            f"== build: images created ({len(built['results'])}) ==",
            ["instance", "region", "policy", "name", "image", "outcome"],
            [
                [
                    r.get("instance_id", ""),
                    r["region"],
                    r["policy"],
                    r.get("name", ""),
                    r.get("image_id", ""),
                    r["outcome"],
                ]
                for r in built["results"]
            ],
        )
        print(f"\n  totals: {built['counts']}, {(time.time() - t) * 1000:.0f} ms")
        for r in built["results"]:
            if r.get("image_id"):
                names[r["image_id"]] = r["name"]
        ok, again = build.invoke({"regions": REGIONS})
        exists = sum(1 for r in again["results"] if r["outcome"] == "exists") if ok else 0
        print(f"  the same build delivered again: {exists} of {len(built['results'])} found existing, nothing created")
        if not ok or exists != len(built["results"]):
            print(f"re-delivered build did not find its images:\n{again}")
            return 1

        # The new AMIs become available: EventBridge delivers `EC2 AMI State Change` to publish,
        # which launches each once (delivered twice: the second finds the test running).
        publisher = Function(emu, "ami-publish", POLICIES)
        functions.append(publisher)
        t = time.time()
        ec2 = emu.ec2("us-east-1")
        rows, tests = [], {}
        for r in built["results"]:
            event = {
                "source": "aws.ec2",
                "detail-type": "EC2 AMI State Change",
                "region": r["region"],
                "detail": {"ImageId": r["image_id"], "State": "available", "ErrorMessage": ""},
            }
            for delivery in ("first", "again"):
                ok, report = publisher.invoke(event)
                if not ok:
                    print(f"publish failed:\n{report}")
                    return 1
                for line in report["results"]:
                    if line["stage"] == "validate" and line["image_id"] == r["image_id"]:
                        rows.append(
                            [
                                names.get(line["image_id"], line["image_id"]),
                                line["action"],
                                line.get("instance_id", ""),
                                delivery,
                                line["outcome"],
                            ]
                        )
                        tests[line["image_id"]] = line.get("instance_id", "")
        table(
            f"== publish: launch tests started ({len(tests)}) ==",
            ["image", "action", "test instance", "delivery", "outcome"],
            rows,
        )
        launched = ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": ["ami-automation:validates"]}])
        count = sum(len(res["Instances"]) for res in launched["Reservations"])
        print(f"\n  {count} test instances for {len(tests)} AMIs: each launched once")
        if count != len(tests) or len(tests) != len(built["results"]):
            print("FAILED: a launch test did not start exactly once")
            return 1
        # EC2 boots them: web-frontend's reaches its login prompt, web-api's panics at boot.
        passing = next(i for i in tests if tag_of(ec2, i, "Family") == "web-frontend")
        failing = next(i for i in tests if i != passing)
        emu.set_instance(
            tests[passing], system_status="ok", instance_status="ok", console="Ubuntu 24.04 LTS\nweb login: "
        )
        emu.set_instance(tests[failing], system_status="ok", instance_status="ok", console="Kernel panic - not syncing")
        rows = []
        for label, minutes in (("the instances ran", 0), ("16 minutes later", 16)):
            if minutes:
                # EC2's clock moves on: the failing test instance was launched 16 minutes ago (a
                # real run never takes a clock ahead of the wall clock).
                emu.set_instance(tests[failing], launched_minutes_ago=minutes)
            ok, report = publisher.invoke({})
            if not ok:
                print(f"publish sweep failed:\n{report}")
                return 1
            for line in report["results"]:
                if line["outcome"] in ("passed", "validation_failed", "waiting", "published"):
                    rows.append(
                        [
                            label,
                            names.get(line["image_id"], line["image_id"]),
                            line["action"],
                            line.get("target", ""),
                            line["outcome"],
                            line.get("reason", ""),
                        ]
                    )
        table(f"== publish: sweeps ({len(rows)}) ==", ["when", "image", "action", "target", "outcome", "reason"], rows)
        verdicts = {i: tag_of(ec2, i, "ami-automation:validation") for i in tests}
        running = [
            i
            for res in ec2.describe_instances(InstanceIds=list(tests.values()))["Reservations"]
            for i in res["Instances"]
            if i["State"]["Name"] != "terminated"
        ]
        print(
            f"\n  verdicts: {', '.join(f'{names[i]}={v}' for i, v in verdicts.items())}; "
            f"test instances still running: {len(running)}; {(time.time() - t) * 1000:.0f} ms"
        )
        if verdicts != {passing: "passed", failing: "failed"} or running:
            print("FAILED: the launch tests did not end as expected")
            return 1

        # Share and copy act on the AMI that passed (on the tool's own `AMI Validated`); the
        # `available` event of the one that failed finds it held by the promotion gate.
        share = Function(emu, "ami-share", POLICIES)
        functions.append(share)
        t = time.time()
        rows = []
        validated = [e for e in emu.published() if e["detail_type"] == "AMI Validated"]
        deliveries = [
            {
                "source": "ami.automation",
                "detail-type": "AMI Validated",
                "region": e["detail"]["region"],
                "detail": e["detail"],
            }
            for e in validated
        ]
        deliveries.append(
            {
                "source": "aws.ec2",
                "detail-type": "EC2 AMI State Change",
                "region": "us-east-1",
                "detail": {"ImageId": failing, "State": "available", "ErrorMessage": ""},
            }
        )
        for event in deliveries:
            ok, shared = share.invoke(event)
            if not ok:
                print(f"share failed:\n{shared}")
                return 1
            for s in shared["results"]:
                rows.append(
                    [
                        names.get(s["image_id"], s["image_id"]),
                        s["region"],
                        event["detail-type"],
                        ",".join(s["add"]) or "-",
                        str(sum(len(v) for v in s.get("snapshot_add", {}).values())),
                        s["outcome"],
                        s.get("reason", ""),
                    ]
                )
        table(
            f"== share: AMI Validated and AMI available events delivered ({len(rows)}) ==",
            ["image", "region", "event", "added", "snapshot grants", "outcome", "reason"],
            rows,
        )
        if [row[5] for row in rows] != ["changed", "skipped"]:
            print("FAILED: share did not act on the passed AMI only")
            return 1
        ok, sweep = share.invoke({})
        if not ok:
            print(f"share sweep failed:\n{sweep}")
            return 1
        print(f"\n  the scheduled sweep over every managed AMI: {sweep['counts']}")
        ok, again = share.invoke({})
        settled = [r for r in again["results"] if r["outcome"] in ("unchanged", "skipped")] if ok else []
        print(
            f"  the sweep again: {len(settled)} of {len(again['results']) if ok else 0} already as their policy says "
            f"(or held by the gate), no Modify call; {(time.time() - t) * 1000:.0f} ms"
        )
        if not ok or len(settled) != len(again["results"]):
            print(f"the second sweep found something to change:\n{again}")
            return 1

        # The same events go to the copy function: the passed AMI to eu-west-1, each twice.
        copier = Function(emu, "ami-copy", POLICIES)
        functions.append(copier)
        t = time.time()
        rows = []
        for event in deliveries:
            for attempt in ("first", "again"):
                ok, copied = copier.invoke(event)
                if not ok:
                    print(f"copy failed:\n{copied}")
                    return 1
                for c in copied["results"]:
                    rows.append(
                        [
                            names.get(c["source_image_id"], c["source_image_id"]),
                            c["source_region"],
                            c.get("destination", ""),
                            c.get("copy_image_id", ""),
                            attempt,
                            c["outcome"],
                        ]
                    )
                    if c.get("copy_image_id"):
                        names[c["copy_image_id"]] = names.get(c["source_image_id"], "") + " (copy)"
        table(
            f"== copy: AMI Validated and AMI available events delivered, each twice ({len(rows)}) ==",
            ["source", "from", "to", "copy", "delivery", "outcome"],
            rows,
        )
        print(f"\n  {(time.time() - t) * 1000:.0f} ms")
        if [row[5] for row in rows] != ["started", "exists", "skipped", "skipped"]:
            print("FAILED: copy did not act on the passed AMI only, once")
            return 1

        # Published: the SSM parameter and the launch template name the AMI that passed; then a
        # rollback pins the one before it, and the next sweep keeps the pin.
        ssm = emu.client("ssm", "us-east-1")
        parameter = "/ami/web/web-frontend"

        def published() -> tuple[str, str]:
            value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
            default = ec2.describe_launch_template_versions(
                LaunchTemplateName="web-frontend-servers", Versions=["$Default"]
            )["LaunchTemplateVersions"][0]
            return value, default["LaunchTemplateData"]["ImageId"]

        now = published()
        print(
            f"\n{parameter} = {names.get(now[0], now[0])}; launch template web-frontend-servers $Default = {names.get(now[1], now[1])}"
        )
        if now != (passing, passing):
            print("FAILED: the AMI that passed is not what consumers launch")
            return 1
        own = ec2.describe_images(Owners=["self"])["Images"]
        tagged = {i["ImageId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])} for i in own}
        previous = max(
            (
                i
                for i in own
                if i["ImageId"] != passing
                and tagged[i["ImageId"]].get("Family") == "web-frontend"
                and tagged[i["ImageId"]].get("ami-automation:validation") == "passed"
            ),
            key=lambda i: i["CreationDate"],
        )["ImageId"]
        # The AMI before it was copied to eu-west-1 when it passed, as every validated AMI is: a
        # rollback pins it there too (where an AMI has no copy, the rollback fails loudly).
        ok, earlier = copier.invoke({"image_ids": [previous]})
        if not ok:
            print(f"copy failed:\n{earlier}")
            return 1
        for c in earlier["results"]:
            if c.get("copy_image_id"):
                names[c["copy_image_id"]] = names.get(previous, previous) + " (copy)"
        ok, rolled = publisher.invoke({"publish": {"policy": "web", "family": "web-frontend", "image_id": previous}})
        if not ok:
            print(f"rollback failed:\n{rolled}")
            return 1
        table(
            "== publish: rollback ==",
            ["region", "target", "from", "to", "outcome"],
            [
                [
                    r["region"],
                    r.get("target", ""),
                    names.get(r.get("previous_image_id", ""), r.get("previous_image_id", "")),
                    names.get(r["image_id"], r["image_id"]),
                    r["outcome"],
                ]
                for r in rolled["results"]
            ],
        )
        ok, kept = publisher.invoke({})
        after = published()
        print(
            f"\n  after the rollback and the next sweep: {parameter} = {names.get(after[0], after[0])}, "
            f"template $Default = {names.get(after[1], after[1])} (the sweep keeps the pin until a newer AMI passes)"
        )
        if not ok or after != (previous, previous):
            print("FAILED: the rollback did not hold")
            return 1

        # The Recycle Bin keeps deregistered AMIs and deleted snapshots for 7 days in both
        # regions, so age-out can be undone.
        for region in REGIONS:
            rbin = emu.client("rbin", region)
            for kind in ("EC2_IMAGE", "EBS_SNAPSHOT"):
                rbin.create_rule(
                    ResourceType=kind, RetentionPeriod={"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"}
                )
        function = Function(emu, "ami-age-out", POLICIES)
        functions.append(function)
        request = {"regions": REGIONS}
        t = time.time()
        ok, dry = function.invoke({**request, "dry_run": True})
        if not ok:
            print(f"dry run failed:\n{dry}")
            return 1
        show("age-out dry run", dry, names, time.time() - t)
        t = time.time()
        ok, real = function.invoke({**request, "dry_run": False})
        if not ok:
            print(f"real run failed:\n{real}")
            return 1
        show("age-out real run", real, names, time.time() - t)

        events = emu.published()
        table(
            f"== EventBridge events published ({len(events)}) ==",
            ["detail-type", "resources"],
            [[e["detail_type"], ",".join(e["resources"])] for e in events],
        )

        # The account must end as the report says.
        problems = []
        for region in REGIONS:
            images = {
                i["ImageId"]: i
                for i in emu.ec2(region).describe_images(Owners=["self"], IncludeDisabled=True)["Images"]
            }
            for a in real["plan"]:
                if a["region"] != region or "snapshot_id" in a:
                    continue
                i = images.get(a["image_id"])
                if a["action"] == "deregister" and i is not None:
                    problems.append(f"{a['image_id']} should be deregistered")
                if a["action"] == "disable" and (i is None or i["State"] != "disabled"):
                    problems.append(f"{a['image_id']} should be disabled")
                if a["action"] == "deprecate" and (i is None or "DeprecationTime" not in i):
                    problems.append(f"{a['image_id']} should be deprecated")
        if problems or real["failed"] or not real["complete"]:
            print("\nFAILED: " + "; ".join(problems or ["see the failed actions above"]))
            return 1
        print("\nThe account ends exactly as the report says.")

        # Other accounts: a shared AMI due to be retired was deprecated first, as notice to
        # whoever uses it. EC2's usage reports miss the launch templates of the last few days, so
        # age-out asks for one only a week after the notice. The week passes (the test bed moves
        # the deprecations back); the next run asks EC2 who uses them.
        noticed = [
            (a["region"], a["image_id"]) for a in real["plan"] if a["action"] == "deprecate" and "notice" in a["reason"]
        ]
        week_ago = (datetime.now(timezone.utc) - timedelta(days=8)).isoformat()
        for region, image_id in noticed:
            emu.seed(region, image_id, deprecation_time=week_ago)
            # ami-share marked when it gave the AMI to its targets: that was a week ago too.
            tags = emu.ec2(region).describe_images(ImageIds=[image_id])["Images"][0].get("Tags", [])
            if any(t["Key"] == "ami-automation:shared-at" for t in tags):
                emu.ec2(region).create_tags(
                    Resources=[image_id], Tags=[{"Key": "ami-automation:shared-at", "Value": week_ago}]
                )
        ok, asking = function.invoke({**request, "dry_run": False})
        if not ok:
            print(f"the run a week later failed:\n{asking}")
            return 1
        requested = [
            (r["region"], u["image_id"])
            for r in asking["regions"]
            for u in r.get("usage_reports", [])
            if u["outcome"] == "requested"
        ]
        print(
            f"\n{len(noticed)} shared AMIs were deprecated as notice; a week later age-out asked EC2 "
            f"for {len(requested)} usage reports."
        )
        if sorted(requested) != sorted(noticed):
            print("FAILED: the usage reports asked are not those of the AMIs given notice")
            return 1
        # Once EC2 has built the reports, the next run reads them: the first AMI is still
        # launched in another account, the others are used by nobody.
        for n, (region, image_id) in enumerate(requested):
            entries = (
                [{"account_id": "210987654321", "resource_type": "ec2:Instance", "usage_count": 3}] if n == 0 else []
            )
            emu.complete_usage_report(region, image_id, entries)
        print(f"\nEC2 built the {len(requested)} usage reports age-out asked for; the next scheduled run:")
        t = time.time()
        ok, later = function.invoke({**request, "dry_run": False})
        if not ok:
            print(f"the next run failed:\n{later}")
            return 1
        show("age-out, reports read", later, names, time.time() - t)
        consumers = [k for r in later["regions"] for k in r["kept"] if k["reason"] == "in_use_by_account"]
        retired = {a["image_id"] for a in later["plan"] if a["action"] == "deregister"}
        if not requested or len(consumers) != 1 or not {i for _, i in requested[1:]} <= retired:
            print("FAILED: the usage reports were not applied")
            return 1

        # Undo: one deregistered AMI comes back from the Recycle Bin with its snapshots.
        gone = next(a for a in real["plan"] if a["action"] == "deregister")
        recovery = gone.get("recovery") or {}
        print(
            f"\n{names.get(gone['image_id'], gone['image_id'])} was recoverable: {recovery.get('recoverable')} "
            f"(until {recovery.get('until')})"
        )
        t = time.time()
        ok, undone = function.invoke(
            {"restore": {"image_ids": [gone["image_id"]]}, "regions": [gone["region"]], "dry_run": False}
        )
        if not ok:
            print(f"restore failed:\n{undone}")
            return 1
        table(
            f"== restore: {gone['image_id']} ==",
            ["image", "region", "steps", "outcome"],
            [
                [
                    r["image_id"],
                    r.get("region", ""),
                    ", ".join(f"{st['step']} {st['id']}" for st in r["steps"]),
                    r["outcome"],
                ]
                for r in undone["results"]
            ],
        )
        back = emu.ec2(gone["region"]).describe_images(ImageIds=[gone["image_id"]])["Images"]
        print(f"\n  {len(back)} AMI registered again, {(time.time() - t) * 1000:.0f} ms")
        if undone["results"][0]["outcome"] != "restored" or not back:
            print("FAILED: the AMI did not come back")
            return 1
        if recall(emu, function, publisher, previous, names, published):
            return 1
        return demo_accounts.distribute(emu, BASE_AMI, table)
    finally:
        for f in functions:
            f.stop()
        emu.stop()


def recall(emu: Emulator, age_out: Function, publisher: Function, bad: str, names: dict, published) -> int:
    """The rolled-back-to AMI turns out bad: a team built its own image from it (and copied that
    to eu-west-1); one recall takes the AMI, its copy, the derived image and its copy out of
    circulation, publish moves consumers to the newest AMI outside the tree, and undo gives
    them back."""
    us, eu = emu.ec2("us-east-1"), emu.ec2("eu-west-1")
    launched = us.run_instances(ImageId=bad, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    derived = us.create_image(InstanceId=launched["Instances"][0]["InstanceId"], Name="team-app-20261205")["ImageId"]
    derived_eu = eu.copy_image(SourceImageId=derived, SourceRegion="us-east-1", Name="team-app-20261205")["ImageId"]
    names[derived], names[derived_eu] = "team-app-20261205", "team-app-20261205 (copy)"
    request = {"recall": {"image_id": bad, "reason": "CVE-2026-1234 in openssl"}, "regions": REGIONS}

    ok, dry = age_out.invoke(request)
    if not ok:
        print(f"recall dry run failed:\n{dry}")
        return 1
    ok, real = age_out.invoke({**request, "dry_run": False})
    if not ok:
        print(f"recall failed:\n{real}")
        return 1
    rows = [
        [
            names.get(r["image_id"], r["image_id"]),
            r["region"],
            str(r["depth"]),
            r["descent"],
            ", ".join(r["steps"]) or "-",
            dry["results"][n]["outcome"],
            r["outcome"],
            ", ".join(u.rsplit("/", 1)[-1] for u in r.get("used_by", [])) or "-",
        ]
        for n, r in enumerate(real["results"])
    ]
    table(
        f"== recall: {names.get(bad, bad)} and what was made from it ({len(rows)}) ==",
        ["image", "region", "depth", "descent", "steps", "dry run", "real run", "used by"],
        rows,
    )
    ok, swept = publisher.invoke({})
    now = published()
    print(
        f"\n  ami-publish on AMI Recalled: /ami/web/web-frontend = {names.get(now[0], now[0])}, "
        f"template $Default = {names.get(now[1], now[1])} (the newest AMI outside the recall)"
    )
    if bad in now or len(real["results"]) != 4:
        print("FAILED: the recall did not take the tree out of circulation")
        return 1

    ok, undone = age_out.invoke({"recall": {"image_id": bad, "undo": True}, "regions": REGIONS, "dry_run": False})
    if not ok:
        print(f"undo failed:\n{undone}")
        return 1
    print(
        "  undo: "
        + ", ".join(f"{names.get(r['image_id'], r['image_id'])} {r['outcome']}" for r in undone["results"])
        + " (marks removed, deprecation cancelled; what publish moved stays)"
    )
    return 0 if all(r["outcome"] == "undone" for r in undone["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
