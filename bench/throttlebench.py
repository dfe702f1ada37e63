"""Pacing under EC2's request limits: age-out against a scaled-down token bucket.

EC2 throttles per account and region with token buckets (DeregisterImage, DeleteSnapshot and
ModifyImageAttribute share one: 100 tokens, refill 5 per second). The test bed throttles the same
way (`POST /_testbed/throttle`, one bucket per region), scaled down so a run takes seconds if
needed: a bucket of SIZE tokens refilled at RATE per second. A run over N old AMIs must lose no
action (everything done, or deferred and reported) and keep its throughput near the buckets'
ceiling: the ideal time is that of the region with the most to retire, (N_region - SIZE) / RATE.

Run with `scripts/bench-throttle [--amis 300 --size 20 --rate 20] [--budget-ms 3000]`; with a
run budget, each run stops at it and continues itself (`Policy Run Continued`, delivered back as
the template's rule does), and the throughput covers the whole backlog, hand-offs included.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
import agebench  # noqa: E402
from harness import Emulator, Function  # noqa: E402

MUTATING = ["DeregisterImage", "DeleteSnapshot", "ModifyImageAttribute", "DisableImage", "EnableImageDeprecation"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amis", type=int, default=300)
    parser.add_argument("--size", type=float, default=20)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument(
        "--budget-ms",
        type=int,
        default=0,
        help="each run's time (AMI_RUN_BUDGET_MS); runs then continue themselves "
        "(Policy Run Continued, delivered as the template's rule would)",
    )
    parser.add_argument(
        "--read-bucket",
        action="store_true",
        help="throttle DescribeImageAttribute too, as EC2 throttles each non-mutating API "
        "(100 tokens refilled at 20/s: the mutating bucket's size, 4x its rate)",
    )
    args = parser.parse_args()
    emu = Emulator()
    try:
        truth = agebench.seed(emu, args.amis)
        buckets = {"mutating": {"actions": MUTATING, "size": args.size, "refill": args.rate}}
        if args.read_bucket:
            buckets["reads"] = {"actions": ["DescribeImageAttribute"], "size": args.size, "refill": 4 * args.rate}
        emu.throttle(buckets)
        before = emu.calls()
        policy = Path(tempfile.mkdtemp()) / "policy.json"
        policy.write_text(json.dumps(agebench.POLICY))
        # The deployment is told the account's limits (EC2's defaults are 5/s and 100).
        # The emulator is slower than EC2 at large pages: widen the call timeout (see agebench).
        env = {
            "AMI_CALL_TIMEOUT_MS": "600000",
            "AMI_DEADLINE_MARGIN_MS": "600000",
            "AMI_MUTATION_RATE": f"{args.rate:g}",
            "AMI_MUTATION_BURST": f"{args.size:g}",
        }
        if args.budget_ms:
            env.update({"AMI_RUN_BUDGET_MS": str(args.budget_ms), "AMI_DEADLINE_MARGIN_MS": "0"})
        function = Function(emu, "ami-age-out", policy, env)
        try:
            runs, done, deferred, start = 0, 0, 0, time.perf_counter()
            per_region: dict[str, int] = {}
            already = 0
            request = {"regions": agebench.REGIONS, "dry_run": False}
            while True:
                runs += 1
                ok, report = function.invoke(request)
                if not ok:
                    raise SystemExit(f"failed: {str(report)[:2000]}")
                plan = [a for a in report["plan"] if a["action"] == "deregister"]
                for a in plan:
                    if a["outcome"] in ("done", "already_done"):
                        done += 1
                        per_region[a["region"]] = per_region.get(a["region"], 0) + 1
                    if a["outcome"] == "already_done":
                        already += 1
                        print(f"run {runs}: {a['image_id']} already deregistered: {a.get('error')}", file=sys.stderr)
                deferred = sum(1 for a in plan if a["outcome"] == "deferred")
                if report["complete"] or runs >= 200:
                    break
                if args.budget_ms:
                    # The run continued itself: deliver its `Policy Run Continued` request.
                    if not (report.get("continued") or {}).get("next"):
                        raise SystemExit(f"the run stopped without continuing: {report.get('continued')}")
                    event = [e for e in emu.published() if e["detail_type"] == "Policy Run Continued"][-1]
                    request = event["detail"]["request"]
            wall = time.perf_counter() - start
        finally:
            function.stop()
        after = emu.calls()
        throttled = emu.throttle_state()["mutating"]["throttled"]
        v = agebench.verdict(emu, truth)
        sent = after.get("DeregisterImage", 0) - before.get("DeregisterImage", 0)
        # Each region's bucket is its own: the backlog takes as long as the region with the most.
        ideal = max((max(n - args.size, 0) / args.rate for n in per_region.values()), default=0.0)
        # From the first DeregisterImage served to the last: the hand-offs between runs, not
        # the first scan, which any tool makes before it can act.
        first, last = emu.spans().get("DeregisterImage", [0.0, 0.0])
        throughput = done / wall
        announced = sum(1 for e in emu.published() if e["detail_type"] == "AMI Deregistered")
        print(
            f"{args.amis} AMIs, bucket {args.size:g} refill {args.rate:g}/s, run budget "
            f"{args.budget_ms or 'none'} ms{', reads throttled' if args.read_bucket else ''}: {done} deregistered "
            f"({announced} announced, {already} found already gone) in {runs} run(s), "
            f"{wall:.1f} s (ideal {ideal:.1f} s: {100 * ideal / wall:.0f}% of the buckets' ceiling; "
            f"per region {per_region}); first to last deregistration {last - first:.1f} s "
            f"({100 * ideal / max(last - first, 1e-9):.0f}% of the ceiling); throughput {throughput:.1f}/s; "
            f"DeregisterImage requests sent {sent} ({throttled} throttled by the bucket); "
            f"deferred at the end {deferred}; missed {v['missed']}, wrong {v['wrong_amis']}"
        )
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
