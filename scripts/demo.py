"""The main job, locally: a realistic account on the local EC2 emulator; the real `ami-build`
binary images the tagged instances (twice: the re-delivery creates nothing), `ami-share` and
`ami-copy` act on the new AMIs' `available` events, then `ami-age-out` retires what is past
retention, first as a dry run, then for real (with what it saved), and finally gives one AMI
back from the Recycle Bin with a restore request; all driven through the Lambda runtime API
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
from harness import FUNCTIONS, ROOT, Emulator, Function, binary  # noqa: E402

EXAMPLE_POLICIES = ROOT / "examples" / "policies.json"
# The example document says dry_run: true (the safe default). The demo acts on the events it
# delivers, so it runs a copy with dry_run: false; age-out still gets an explicit dry run first.
POLICIES = Path(tempfile.mkdtemp(prefix="ami-demo-")) / "policies.json"
POLICIES.write_text(json.dumps({**json.loads(EXAMPLE_POLICIES.read_text()), "dry_run": False}))
REGIONS = ["us-east-1", "eu-west-1"]
BASE_AMI = "ami-0a1b2c3d4e5f60001"
NOW = datetime.now(timezone.utc)


def seed_account(emu: Emulator) -> dict[str, str]:
    """Two families in us-east-1 (tag Family=web-*), a batch family in eu-west-1 (by name), an
    instance and a launch template using old AMIs, a protected AMI, a decoy tag."""
    names: dict[str, str] = {}
    # The copies to eu-west-1 are encrypted with the customer managed key the example policy
    # names (a policy that shares may not copy onto the AWS managed key: it cannot be shared).
    kms = emu.client("kms", "eu-west-1")
    key = kms.create_key(Description="AMI copies")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/ami-copies", TargetKeyId=key)
    ec2 = emu.ec2("us-east-1")
    builder = ec2.run_instances(
        ImageId=BASE_AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}},
                             {"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 20}}],
    )["Instances"][0]["InstanceId"]
    fleet = [
        ("web-frontend", 2), ("web-frontend", 9), ("web-frontend", 20), ("web-frontend", 45),
        ("web-frontend", 75), ("web-frontend", 120), ("web-frontend", 150), ("web-frontend", 200),
        ("web-api", 1), ("web-api", 35), ("web-api", 95), ("web-api", 130),
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
            InstanceId=builder, Name=name, NoReboot=True,
            TagSpecifications=[{"ResourceType": "image", "Tags": tags}],
        )["ImageId"]
        emu.seed("us-east-1", image, creation_date=created.isoformat())
        names[image] = name
    by_name = {v: k for k, v in names.items()}
    old_running = next(i for i, n in names.items() if n.startswith("web-frontend") and (NOW - timedelta(days=120)).strftime("%Y%m%d") in n)
    ec2.run_instances(ImageId=old_running, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    # The instances the build stage images (tag ami-automation:build=web).
    for family in ("web-frontend", "web-api"):
        ec2.run_instances(
            ImageId=BASE_AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "ami-automation:build", "Value": "web"}, {"Key": "Family", "Value": family}]}],
        )
    old_template = next(i for i, n in names.items() if n.startswith("web-api") and (NOW - timedelta(days=95)).strftime("%Y%m%d") in n)
    ec2.create_launch_template(LaunchTemplateName="web-api", LaunchTemplateData={"ImageId": old_template})
    del by_name

    eu = emu.ec2("eu-west-1")
    eu_builder = eu.run_instances(ImageId=BASE_AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    for days in (3, 20, 40, 70):
        created = NOW - timedelta(days=days)
        name = f"batch-{created:%Y%m%d}"
        image = eu.create_image(InstanceId=eu_builder, Name=name, NoReboot=True)["ImageId"]
        emu.seed("eu-west-1", image, creation_date=created.isoformat())
        names[image] = name
    return names


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (none)")
        return
    widths = [max(len(h), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  " + "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def show(stage: str, report: dict, names: dict[str, str], elapsed: float) -> None:
    rows = []
    for a in report["plan"]:
        target = a.get("snapshot_id") or a.get("image_id")
        rows.append([names.get(a.get("image_id", ""), "") or target, a.get("family") or "", a["region"],
                     a["action"], a["outcome"], a["reason"]])
    table(f"== {stage}: actions ({len(rows)}) ==", ["image/snapshot", "family", "region", "action", "outcome", "reason"], rows)
    kept = [[names.get(k["image_id"], k["image_id"]), k["family"], r["region"], "keep", k["reason"], k.get("detail", "")]
            for r in report["regions"] for k in r["kept"]]
    table(f"== {stage}: kept ({len(kept)}) ==", ["image", "family", "region", "action", "reason", "detail"], kept)
    c = report["counts"]
    print(f"\n  totals: planned {c.get('planned', 0)}, kept {c.get('kept', 0)}, failed {len(report['failed'])}, "
          f"remaining {report['remaining']}, complete {report['complete']}, {elapsed * 1000:.0f} ms")
    saved = report["saved"]
    verb = "would free" if report["dry_run"] else "freed"
    label = " (volume sizes: an upper bound)" if saved["estimated"] else ""
    print(f"  saving: {verb} {saved['gib']:.0f} GiB of snapshots{label}, about ${saved['monthly_usd']:.2f} a month "
          f"at ${saved['price_per_gb_month']}/GB-month")


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
        print(f"Seeded {len(names)} AMIs in {', '.join(REGIONS)} in {time.time() - t:.1f} s "
              f"(policies: {EXAMPLE_POLICIES.relative_to(ROOT)} with dry_run false)")
        build = Function(emu, "ami-build", POLICIES)
        functions.append(build)
        t = time.time()
        ok, built = build.invoke({"regions": REGIONS})
        if not ok:
            print(f"build failed:\n{built}")
            return 1
        table(f"== build: images created ({len(built['results'])}) ==", ["instance", "region", "policy", "name", "image", "outcome"],
              [[r.get("instance_id", ""), r["region"], r["policy"], r.get("name", ""), r.get("image_id", ""), r["outcome"]]
               for r in built["results"]])
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

        # The new AMIs become available: EventBridge delivers `EC2 AMI State Change` to share.
        share = Function(emu, "ami-share", POLICIES)
        functions.append(share)
        t = time.time()
        rows = []
        for r in built["results"]:
            event = {"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "region": r["region"],
                     "detail": {"ImageId": r["image_id"], "State": "available", "ErrorMessage": ""}}
            ok, shared = share.invoke(event)
            if not ok:
                print(f"share failed:\n{shared}")
                return 1
            for s in shared["results"]:
                rows.append([names.get(s["image_id"], s["image_id"]), s["region"], s["policy"], ",".join(s["add"]) or "-",
                             ",".join(s["remove"]) or "-", str(sum(len(v) for v in s.get("snapshot_add", {}).values())),
                             s["outcome"]])
        table(f"== share: AMI available events delivered ({len(rows)}) ==",
              ["image", "region", "policy", "added", "removed", "snapshot grants", "outcome"], rows)
        ok, sweep = share.invoke({})
        if not ok:
            print(f"share sweep failed:\n{sweep}")
            return 1
        print(f"\n  the scheduled sweep over every managed AMI: {sweep['counts']}")
        ok, again = share.invoke({})
        unchanged = sum(1 for r in again["results"] if r["outcome"] == "unchanged") if ok else -1
        print(f"  the sweep again: {unchanged} of {len(again['results']) if ok else 0} already as their policy says, "
              f"no Modify call; {(time.time() - t) * 1000:.0f} ms")
        if not ok or unchanged != len(again["results"]):
            print(f"the second sweep found something to change:\n{again}")
            return 1

        # The same `available` events go to the copy function: each new AMI to eu-west-1.
        copier = Function(emu, "ami-copy", POLICIES)
        functions.append(copier)
        t = time.time()
        rows = []
        for r in built["results"]:
            event = {"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "region": r["region"],
                     "detail": {"ImageId": r["image_id"], "State": "available", "ErrorMessage": ""}}
            for attempt in ("first", "again"):
                ok, copied = copier.invoke(event)
                if not ok:
                    print(f"copy failed:\n{copied}")
                    return 1
                for c in copied["results"]:
                    rows.append([names.get(c["source_image_id"], c["source_image_id"]), c["source_region"],
                                 c.get("destination", ""), c.get("copy_image_id", ""), attempt, c["outcome"]])
                    if c.get("copy_image_id"):
                        names[c["copy_image_id"]] = names.get(c["source_image_id"], "") + " (copy)"
        table(f"== copy: AMI available events delivered, each twice ({len(rows)}) ==",
              ["source", "from", "to", "copy", "delivery", "outcome"], rows)
        print(f"\n  {(time.time() - t) * 1000:.0f} ms")
        if sorted({row[5] for row in rows if row[4] == "again"}) != ["exists"]:
            print("a re-delivered copy event did not find its copy")
            return 1

        # The Recycle Bin keeps deregistered AMIs and deleted snapshots for 7 days in both
        # regions, so age-out can be undone.
        for region in REGIONS:
            rbin = emu.client("rbin", region)
            for kind in ("EC2_IMAGE", "EBS_SNAPSHOT"):
                rbin.create_rule(ResourceType=kind,
                                 RetentionPeriod={"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"})
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
        table(f"== EventBridge events published ({len(events)}) ==", ["detail-type", "resources"],
              [[e["detail_type"], ",".join(e["resources"])] for e in events])

        # The account must end as the report says.
        problems = []
        for region in REGIONS:
            images = {i["ImageId"]: i for i in emu.ec2(region).describe_images(Owners=["self"], IncludeDisabled=True)["Images"]}
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

        # Other accounts: age-out asked EC2 who uses the shared AMIs it would retire. Once EC2
        # has built the reports, the next run reads them: the first AMI is still launched in
        # another account, the others are used by nobody.
        requested = [(r["region"], u["image_id"]) for r in real["regions"] for u in r.get("usage_reports", [])
                     if u["outcome"] == "requested"]
        for n, (region, image_id) in enumerate(requested):
            entries = [{"account_id": "210987654321", "resource_type": "ec2:Instance", "usage_count": 3}] if n == 0 else []
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
        if requested and (len(consumers) != 1 or not {i for _, i in requested[1:]} <= retired):
            print("FAILED: the usage reports were not applied")
            return 1

        # Undo: one deregistered AMI comes back from the Recycle Bin with its snapshots.
        gone = next(a for a in real["plan"] if a["action"] == "deregister")
        recovery = gone.get("recovery") or {}
        print(f"\n{names.get(gone['image_id'], gone['image_id'])} was recoverable: {recovery.get('recoverable')} "
              f"(until {recovery.get('until')})")
        t = time.time()
        ok, undone = function.invoke({"restore": {"image_ids": [gone["image_id"]]}, "regions": [gone["region"]],
                                      "dry_run": False})
        if not ok:
            print(f"restore failed:\n{undone}")
            return 1
        table(f"== restore: {gone['image_id']} ==", ["image", "region", "steps", "outcome"],
              [[r["image_id"], r.get("region", ""), ", ".join(f"{st['step']} {st['id']}" for st in r["steps"]),
                r["outcome"]] for r in undone["results"]])
        back = emu.ec2(gone["region"]).describe_images(ImageIds=[gone["image_id"]])["Images"]
        print(f"\n  {len(back)} AMI registered again, {(time.time() - t) * 1000:.0f} ms")
        if undone["results"][0]["outcome"] != "restored" or not back:
            print("FAILED: the AMI did not come back")
            return 1
        return 0
    finally:
        for f in functions:
            f.stop()
        emu.stop()


if __name__ == "__main__":
    sys.exit(main())
