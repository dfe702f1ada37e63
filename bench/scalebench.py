"""Scale: one age-out run over a region with many AMIs (issue 18).

Seeds N AMIs (two snapshots each, ages spread over a year, ten families) straight into the test
bed's backend (`POST /_testbed/fleet`), then runs the real `ami-age-out` binary once, as a dry run
by default, and reports its peak RSS (`VmHWM`), the run's wall time, the pure planner's time
(`planning_ms`), the API requests by action, and the size of its answer.

Run with `cargo build --release --bins && AMI_PROFILE=release scripts/bench-scale [--amis 50000] [--real] [--unbounded]`.
By default the run has the template's deadline and EC2's pacing; `--unbounded` lifts both.
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

POLICY = {
    "dry_run": True,
    "policies": [
        {
            "name": "fleet",
            "select": {"tags": {"Bench": "*"}},
            "family_by": "tag:Family",
            "retain": {"keep_latest": 1, "max_age_days": 90},
        }
    ],
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amis", type=int, default=50_000)
    parser.add_argument("--real", action="store_true", help="a real run instead of a dry run")
    parser.add_argument(
        "--unbounded",
        action="store_true",
        help="no deadline and no pacing: the run reads every candidate's share state",
    )
    args = parser.parse_args()
    with Emulator() as emu:
        ec2 = emu.ec2("us-east-1")
        builder = ec2.run_instances(
            ImageId="ami-0a1b2c3d4e5f60001",
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}},
                {"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 8}},
            ],
        )["Instances"][0]["InstanceId"]
        t = time.perf_counter()
        seeded = emu.seed_fleet("us-east-1", builder, args.amis, tags={"Bench": "yes"})
        print(f"seeded {seeded} AMIs with {2 * seeded} snapshots in {time.perf_counter() - t:.0f} s", flush=True)
        policy = Path(tempfile.mkdtemp()) / "policy.json"
        policy.write_text(json.dumps(POLICY))
        # The template's deployment: a 900 s timeout less the 30 s margin, EC2's pacing (5/s,
        # burst 100), so the run reads the share state of as many AMIs as it could retire. The
        # emulator is slower than EC2, so each call may take longer.
        env = {"AMI_CALL_TIMEOUT_MS": "120000", "AMI_DEADLINE_MARGIN_MS": "120000", "AMI_RUN_BUDGET_MS": "870000"}
        if args.unbounded:
            env = {
                "AMI_CALL_TIMEOUT_MS": "900000",
                "AMI_DEADLINE_MARGIN_MS": "900000",
                "AMI_MUTATION_RATE": "100000",
                "AMI_MUTATION_BURST": "100000",
            }
        before = emu.calls()
        with Function(emu, "ami-age-out", policy, env) as function:
            t = time.perf_counter()
            ok, report = function.invoke({"regions": ["us-east-1"], "dry_run": not args.real})
            wall = time.perf_counter() - t
            rss_mb = function.peak_rss_kb() / 1024
        if not ok:
            print(f"failed: {str(report)[:2000]}")
            return 1
        after = emu.calls()
        used = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        size = len(json.dumps(report))
        print(
            f"{args.amis} AMIs, {'real' if args.real else 'dry'} run: peak RSS {rss_mb:.1f} MB, {wall:.1f} s, "
            f"{report['counts'].get('planned', 0)} actions planned, kept {report['counts'].get('kept', 0)} "
            f"({report['kept_by_reason'].get('deferred', 0)} deferred), answer {size / 1e6:.2f} MB"
            f"{' (truncated)' if 'truncated' in report else ''}"
        )
        planning = sum(r.get("planning_ms", 0) for r in report.get("regions", []))
        print(f"    planning (the pure planner, every pass): {planning} ms")
        print(f"    requests by action: {json.dumps(used, sort_keys=True)}")
        served = sorted(emu.times().items(), key=lambda kv: -kv[1])[:6]
        print("    the emulator's time by action: " + ", ".join(f"{k} {v:.1f} s" for k, v in served))
    return 0


if __name__ == "__main__":
    sys.exit(main())
