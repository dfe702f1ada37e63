"""EventBridge Scheduler's one-time schedules: the launch tests' dead-man switch runs when due."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from moto.ec2.models import ec2_backends

# EventBridge Scheduler's one-time schedules ("Schedule types": `at(yyyy-mm-ddThh:mm:ss)` runs
# once at that time in ScheduleExpressionTimezone; ActionAfterCompletion DELETE removes it after
# it ran; "Using universal targets": `arn:aws:scheduler:::aws-sdk:<service>:<apiAction>` calls
# the API with `Input` as its request). moto stores schedules and never runs them. Here a runner
# runs the due ones whose target is EC2 TerminateInstances (the launch tests' dead-man switch),
# on a clock a test may move ahead (`POST /_testbed/scheduler {"advance_minutes": N}`).
SCHEDULER_CLOCK: list[float] = [0.0]


#: Plain moto runs no schedule: the route only moves the clock.
SCHEDULER_RUNS: list[bool] = [True]


SCHEDULES_RUN: list[dict[str, Any]] = []


TERMINATE_TARGET = re.compile(r"^arn:aws[a-z-]*:scheduler:::aws-sdk:ec2:terminateInstances$")


def run_due_schedules() -> None:
    from moto.scheduler.models import scheduler_backends

    now = datetime.now(timezone.utc) + timedelta(minutes=SCHEDULER_CLOCK[0])
    for account, by_region in list(scheduler_backends.items()):
        for region, backend in list(by_region.items()):
            for group in list(backend.schedule_groups.values()):
                for schedule in list(group.schedules.values()):
                    found = re.fullmatch(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)", schedule.schedule_expression or "")
                    if not found or schedule.state != "ENABLED":
                        continue
                    due = datetime.fromisoformat(found.group(1)).replace(tzinfo=timezone.utc)
                    if due > now or not TERMINATE_TARGET.match(schedule.target.get("Arn", "")):
                        continue
                    ids = json.loads(schedule.target.get("Input") or "{}").get("InstanceIds", [])
                    try:
                        ec2_backends[account][region].terminate_instances(ids)
                    except Exception as err:  # noqa: BLE001 - a failed run, as Scheduler retries it
                        SCHEDULES_RUN.append(
                            {"name": schedule.name, "instance_ids": ids, "region": region, "error": repr(err)}
                        )
                        continue
                    SCHEDULES_RUN.append({"name": schedule.name, "instance_ids": ids, "region": region})
                    if schedule.action_after_completion == "DELETE":
                        group.delete_schedule(schedule.name)


def scheduler(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: move the scheduler's clock ahead by `advance_minutes`, run what is due, and
    answer the schedules run so far."""
    SCHEDULER_CLOCK[0] += float(body.get("advance_minutes", 0))
    if SCHEDULER_RUNS[0]:
        run_due_schedules()
    return {"run": SCHEDULES_RUN}
