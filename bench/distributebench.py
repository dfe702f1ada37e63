"""Distribute: one sweep over an organization's OU and the units it fans out (issue 31).

Seeds an OU of N accounts (Organizations, as the test bed seeds it), the target role in S of
them, and a golden AMI in each of R regions shared with the OU, then runs the real
`ami-distribute` binary through the Lambda runtime API:

* the sweep (a run request over the R regions): ListAccountsForParent over the OU, one sealed
  unit per account and region (KMS GenerateMac each), 10 per SendMessageBatch call;
* the units of the S served accounts, each delivered as Lambda's SQS event source delivers it
  (the unit's ListParents, AssumeRole, DescribeImages in both accounts, KMS VerifyMac of the unit
  and of the verdicts, GetParameter/PutParameter in the target), first round (each publishes its
  parameter) and second round (nothing to change: the steady state).

Reports wall times, requests by action and the function's peak RSS, and an estimate (not a
measurement: the units are delivered one at a time here) of draining the N×R units at the SQS
event source's MaximumConcurrency (20). The targets get SSM parameters only: no copy, no launch
template, no retirement. A unit with a failed or refused line fails the benchmark.

Run with `scripts/bench-distribute [--accounts 500 --regions 4 --served 20]` (a debug build;
`AMI_PROFILE=release` for a release one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from harness import Emulator, Function, deliver_units  # noqa: E402

REGIONS = ["us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2"]
CONCURRENCY = 20  # template.yaml: the SQS event source's ScalingConfig.MaximumConcurrency


def golden(emu: Emulator, region: str) -> str:
    ec2 = emu.ec2(region)
    builder = ec2.run_instances(ImageId="ami-0a1b2c3d4e5f60001", MinCount=1, MaxCount=1, InstanceType="t3.micro")
    return ec2.create_image(
        InstanceId=builder["Instances"][0]["InstanceId"],
        Name="golden-web-20261201",
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "Team", "Value": "platform"}, {"Key": "Family", "Value": "web"}]}
        ],
    )["ImageId"]


# The harness's own calls, as Lambda's SQS event source makes them: not the function's.
POLLER = {"ReceiveMessage", "DeleteMessage"}


def delta(before: dict[str, int], after: dict[str, int]) -> Counter:
    return Counter({k: after[k] - before.get(k, 0) for k in after if k not in POLLER and after[k] != before.get(k, 0)})


def rounds(emu: Emulator, function: Function, served: set[str], regions: list[str]) -> list[dict]:
    """Two sweeps, each followed by delivering the served accounts' units."""
    out = []
    for name in ("first round (publishes)", "second round (steady state)"):
        before = emu.calls()
        t = time.perf_counter()
        ok, sweep = function.invoke({"regions": regions})
        sweep_s = time.perf_counter() - t
        if not ok:
            raise RuntimeError(f"the sweep failed: {sweep}")
        swept = emu.calls()
        units = deliver_units(emu, function, lambda unit: unit["account"] in served)
        outcomes = Counter(f"{line['action']} {line['outcome']}" for report, _ in units for line in report["results"])
        failed = [k for k in outcomes if k.endswith((" failed", " refused"))]
        if failed:
            raise RuntimeError(f"units failed: {dict(outcomes)}")
        out.append(
            {
                "round": name,
                "queued": sum(1 for line in sweep["results"] if line["outcome"] == "queued"),
                "sweep_s": sweep_s,
                "sweep_requests": delta(before, swept),
                "units": len(units),
                "unit_s": sorted(s for _, s in units),
                "unit_requests": delta(swept, emu.calls()),
                "outcomes": outcomes,
            }
        )
    return out


def report(rows: list[dict], accounts: int, regions: int, rss_kb: int) -> None:
    total = accounts * regions
    for r in rows:
        seconds = r["unit_s"]
        median, p95 = statistics.median(seconds), seconds[int(0.95 * (len(seconds) - 1))]
        per_unit = sum(r["unit_requests"].values()) / max(r["units"], 1)
        print(f"\n== {r['round']} ==")
        print(
            f"  sweep: {r['queued']} units queued in {r['sweep_s']:.2f} s, {sum(r['sweep_requests'].values())} requests"
        )
        print(f"    {dict(sorted(r['sweep_requests'].items()))}")
        print(
            f"  units served: {r['units']}, median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, {per_unit:.1f} requests each"
        )
        print(f"    {dict(sorted(r['unit_requests'].items()))}")
        print(f"    outcomes: {dict(sorted(r['outcomes'].items()))}")
        drain = total * median / CONCURRENCY
        print(
            f"  estimate: {total} units at MaximumConcurrency {CONCURRENCY}: {drain:.0f} s at the median "
            f"({total * p95 / CONCURRENCY:.0f} s at p95), plus the sweep"
        )
    print(f"\n  peak RSS of ami-distribute: {rss_kb / 1024:.1f} MB")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--served", type=int, default=20, help="accounts with the target role, whose units are served")
    args = parser.parse_args()
    regions = REGIONS[: args.regions]
    accounts = [f"{100000000000 + n:012d}" for n in range(1, args.accounts + 1)]
    served = set(accounts[: args.served])
    with Emulator() as emu:
        t = time.perf_counter()
        ou = emu._post("organization", {"units": {"platform": accounts}})["units"]["platform"]
        emu._post("accounts", {"accounts": sorted(served)})
        for region in regions:
            golden(emu, region)
        print(
            f"seeded an OU of {len(accounts)} accounts, {len(served)} with the target role, a golden AMI in each of "
            f"{len(regions)} regions in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
        document = {
            "dry_run": False,
            "policies": [
                {
                    "name": "golden",
                    "select": {"tags": {"Team": "platform"}},
                    "family_by": "tag:Family",
                    "share": {"organizational_units": [ou]},
                    "distribute": {
                        "targets": [{"organizational_units": [ou], "ssm_parameters": ["/ami/golden/{family}"]}]
                    },
                }
            ],
        }
        path = Path(tempfile.mkdtemp(prefix="ami-bench-distribute-")) / "policies.json"
        path.write_text(json.dumps(document))
        with Function(emu, "ami-share", path) as share:
            ok, shared = share.invoke({"regions": regions})
            if not ok:
                raise RuntimeError(f"sharing failed: {shared}")
        with Function(emu, "ami-distribute", path) as function:
            rows = rounds(emu, function, served, regions)
            rss = function.peak_rss_kb()
    report(rows, len(accounts), len(regions), rss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
