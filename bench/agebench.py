"""Age-out benchmark: ami-age-out against Cloud Custodian's `aws.ami` deregister policy, on
identical, deterministically seeded accounts in the local EC2 emulator.

For each size, for each tool: a fresh emulator, the same fleet (seeded generator: families across
two regions, ages over a year, AMIs used by instances and by launch templates, snapshots shared
by two AMIs), then one run of the tool. Measured: wall time of the run, API requests by action
(counted by the emulator), peak RSS of the tool's process, and correctness against the fleet's
ground truth: AMIs deregistered although in use (wrong), snapshots deleted although a remaining
AMI uses them (wrong), old unused AMIs left (missed).

Run with `scripts/bench [--sizes 100,1000,5000]`; it prints the table and rewrites the results
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from harness import ROOT, Emulator, Function  # noqa: E402

BASE_AMI = "ami-0a1b2c3d4e5f60001"
REGIONS = ["us-east-1", "eu-west-1"]
MAX_AGE = 90
NOW = datetime.now(timezone.utc)
C7N = Path(os.environ.get("AMI_C7N_VENV", ROOT / ".venv-c7n")) / "bin" / "custodian"

POLICY = {
    "dry_run": False,
    "policies": [
        {
            "name": "fleet",
            "select": {"tags": {"Bench": "*"}},
            "retain": {"keep_latest": 0, "allow_empty_family": True, "max_age_days": MAX_AGE},
        }
    ],
}
CUSTODIAN = f"""policies:
  - name: ami-age-out
    resource: aws.ami
    filters:
      - tag:Bench: present
      - type: image-age
        days: {MAX_AGE}
      - type: unused
        value: true
    actions:
      - type: deregister
        delete-snapshots: true
"""


# Requests that are not EC2's (our events; custodian's STS and autoscaling look-ups are counted
# as what they are: autoscaling is part of its in-use check, so it stays in).
NOT_EC2 = {"PutEvents", "GetCallerIdentity"}


def seed(emu: Emulator, size: int) -> dict:
    """The fleet; returns the ground truth."""
    rng = random.Random(42)
    truth: dict[str, Any] = {"old_unused": set(), "in_use": set(), "shared_snapshots": {}, "images": {}}
    per_region = size // len(REGIONS)
    for region in REGIONS:
        ec2 = emu.ec2(region)
        builder = ec2.run_instances(
            ImageId=BASE_AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}},
                {"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 8}},
            ],
        )["Instances"][0]["InstanceId"]
        specs = [(i, rng.randrange(0, 365), rng.random()) for i in range(per_region)]

        # The loop's client, builder and region, bound now (the pool runs within this iteration).
        def make(
            spec: tuple[int, int, float], ec2: Any = ec2, builder: str = builder, region: str = region
        ) -> tuple[str, int, float]:
            i, days, _ = spec
            created = NOW - timedelta(days=days)
            tags = [{"Key": "Bench", "Value": "yes"}, {"Key": "Family", "Value": f"f{i % 10}"}]
            image = ec2.create_image(
                InstanceId=builder,
                Name=f"f{i % 10}-{region}-{i:05d}",
                NoReboot=True,
                TagSpecifications=[{"ResourceType": "image", "Tags": tags}],
            )["ImageId"]
            emu.seed(region, image, creation_date=created.isoformat())
            return image, days, spec[2]

        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(make, specs))
        for image, days, roll in made:
            truth["images"][image] = region
            if roll < 0.04:  # used by a running instance
                ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")
                truth["in_use"].add(image)
            elif roll < 0.07:  # named by a launch template (an old version)
                ec2.create_launch_template(LaunchTemplateName=f"lt-{image}", LaunchTemplateData={"ImageId": image})
                truth["in_use"].add(image)
            elif days > MAX_AGE:
                truth["old_unused"].add(image)
        # Snapshots shared by two AMIs: a young AMI registered from an old AMI's root snapshot.
        old = sorted(i for i, d, r in made if d > MAX_AGE and i in truth["old_unused"])[: max(1, per_region // 50)]
        for n, image in enumerate(old):
            snap = ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
            young = ec2.register_image(
                Name=f"shared-{region}-{n}",
                RootDeviceName="/dev/xvda",
                VirtualizationType="hvm",
                BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
                TagSpecifications=[
                    {
                        "ResourceType": "image",
                        "Tags": [{"Key": "Bench", "Value": "yes"}, {"Key": "Family", "Value": "shared"}],
                    }
                ],
            )["ImageId"]
            emu.seed(region, young, creation_date=(NOW - timedelta(days=1)).isoformat())
            truth["shared_snapshots"][snap] = young
            truth["images"][young] = region
    return truth


def verdict(emu: Emulator, truth: dict) -> dict:
    left_images, left_snaps = set(), set()
    for region in REGIONS:
        ec2 = emu.ec2(region)
        left_images |= {i["ImageId"] for i in ec2.describe_images(Owners=["self"], IncludeDisabled=True)["Images"]}
        left_snaps |= {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    wrong_amis = len(truth["in_use"] - left_images)
    wrong_snaps = sum(
        1 for snap, user in truth["shared_snapshots"].items() if user in left_images and snap not in left_snaps
    )
    missed = len(truth["old_unused"] & left_images)
    return {
        "wrong_amis": wrong_amis,
        "wrong_snapshots": wrong_snaps,
        "missed": missed,
        "retired": len(truth["old_unused"]) - missed,
    }


# EC2's request buckets per account and region, at their published rates: DeregisterImage,
# DeleteSnapshot and the other mutating image calls share one of 100 tokens refilled at 5 per
# second (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html).
EC2_BUCKETS = {
    "mutating": {
        "actions": [
            "DeregisterImage",
            "DeleteSnapshot",
            "ModifyImageAttribute",
            "DisableImage",
            "EnableImageDeprecation",
        ],
        "size": 100,
        "refill": 5,
    }
}
THROTTLED = False


def throttle_like_ec2(emu: Emulator) -> None:
    emu.throttle(EC2_BUCKETS)


def run_ours(emu: Emulator) -> tuple[float, int]:
    policy = Path(tempfile.mkdtemp()) / "policy.json"
    policy.write_text(json.dumps(POLICY))
    # The emulator answers a 1,000-image page in seconds where EC2 takes about one, and more
    # slowly still while both regions' scans run at once: the call timeout (25 s by default,
    # sized for EC2) is widened for it, with the margin it must not exceed.
    env: dict[str, str | None] = {"AMI_CALL_TIMEOUT_MS": "600000", "AMI_DEADLINE_MARGIN_MS": "600000"}
    if THROTTLED:
        # The test bed throttles like EC2: the pacer runs at its defaults (EC2's 5/s, 100).
        env.update({"AMI_MUTATION_RATE": None, "AMI_MUTATION_BURST": None})
    else:
        # The emulator does not throttle: pacing is set out of the way (see the pacing column).
        env.update({"AMI_MUTATION_RATE": "100000", "AMI_MUTATION_BURST": "100000"})
    with Function(emu, "ami-age-out", policy, env) as function:
        t = time.perf_counter()
        ok, report = function.invoke({"regions": REGIONS, "dry_run": False})
        wall = time.perf_counter() - t
        if not ok:
            raise SystemExit(f"ami-age-out failed: {str(report)[:2000]}")
        return wall, function.peak_rss_kb()


def run_custodian(emu: Emulator) -> tuple[float, int]:
    work = Path(tempfile.mkdtemp())
    (work / "policy.yml").write_text(CUSTODIAN)
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=emu.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    # Custodian's own peak RSS: its entry point run under a wrapper that reports it on exit.
    wrapper = (
        "import resource, sys\nfrom c7n.cli import main\nsys.argv = ['custodian'] + sys.argv[1:]\n"
        "try:\n    sys.exit(main())\nfinally:\n    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    # --cache-period 0: no resource cache between runs (it would reuse another account's listing).
    cmd = [
        str(C7N.parent / "python"),
        "-c",
        wrapper,
        "run",
        "--cache-period",
        "0",
        "-s",
        str(work / "out"),
        str(work / "policy.yml"),
    ]
    for region in REGIONS:
        cmd += ["--region", region]
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    errors = out.stderr.count("Error while executing policy")
    if errors:
        first = next((line for line in out.stderr.splitlines() if "ClientError" in line), "")
        print(f"    custodian reported {errors} policy errors (exit {out.returncode}): {first}", flush=True)
    rss = next(int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("MAXRSS"))
    return wall, rss


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--write", action="store_true", help="rewrite the results in BENCHMARKS.md")
    parser.add_argument(
        "--throttle",
        action="store_true",
        help="the test bed throttles like EC2 (100 tokens, 5/s); ours paces at its defaults",
    )
    args = parser.parse_args()
    global THROTTLED
    THROTTLED = args.throttle
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        result = {}
        for tool, run in (("ami-age-out", run_ours), ("cloud-custodian", run_custodian)):
            emu = Emulator()
            try:
                t = time.perf_counter()
                truth = seed(emu, size)
                seeded = time.perf_counter() - t
                if THROTTLED:
                    throttle_like_ec2(emu)
                before = emu.calls()
                wall, rss = run(emu)
                after = emu.calls()
                used = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
                v = verdict(emu, truth)
                ec2_requests = sum(n for k, n in used.items() if k not in NOT_EC2)
                result[tool] = {
                    "wall": wall,
                    "rss_mb": rss / 1024,
                    "requests": ec2_requests,
                    "events": used.get("PutEvents", 0),
                    "by_action": used,
                    **v,
                }
                print(
                    f"{size} AMIs, {tool}: {wall:.2f} s, {ec2_requests} EC2 requests, {rss / 1024:.1f} MB, "
                    f"retired {v['retired']}, missed {v['missed']}, wrong AMIs {v['wrong_amis']}, "
                    f"wrong snapshots {v['wrong_snapshots']} (seeded in {seeded:.0f} s)",
                    flush=True,
                )
                print(f"    requests by action: {json.dumps(used, sort_keys=True)}", flush=True)
            finally:
                emu.stop()
        rows.append((size, result))
    table = [
        "| AMIs | tool | pacing | wall time | EC2 requests | PutEvents | peak RSS | retired | missed | wrong AMIs | wrong snapshots |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, result in rows:
        for tool, r in result.items():
            if tool == "ami-age-out":
                pacing = "on: 5/s, burst 100 (EC2's)" if THROTTLED else "off (AMI_MUTATION_RATE=100000)"
            else:
                pacing = "none (botocore retries)"
            table.append(
                f"| {size} | {tool} | {pacing} | {r['wall']:.2f} s | {r['requests']} | {r['events']} | {r['rss_mb']:.1f} MB | "
                f"{r['retired']} | {r['missed']} | {r['wrong_amis']} | {r['wrong_snapshots']} |"
            )
        ours, theirs = result["ami-age-out"], result["cloud-custodian"]
        table.append(
            f"| {size} | ratio (custodian / ours) | | {theirs['wall'] / ours['wall']:.1f}× | "
            f"{theirs['requests'] / max(ours['requests'], 1):.1f}× | | | | | | |"
        )
    text = "\n".join(table)
    print(text)
    if args.write:
        path = ROOT / "BENCHMARKS.md"
        doc = path.read_text()
        marker = "throttled" if THROTTLED else "results"
        start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
        head, rest = doc.split(start)
        _, tail = rest.split(end)
        profile = os.environ.get("AMI_PROFILE", "debug")
        prefix = f"cargo build --release --bins && AMI_PROFILE={profile} " if profile != "debug" else ""
        flag = " --throttle" if THROTTLED else ""
        contract = "the test bed's EC2 contract check on"
        stamp = (
            f"Measured {NOW:%Y-%m-%d} with `{prefix}scripts/bench --sizes {args.sizes}{flag} --write` "
            f"({profile} build of ami-age-out; {contract}).\n\n"
        )
        path.write_text(f"{head}{start}\n{stamp}{text}\n{end}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
