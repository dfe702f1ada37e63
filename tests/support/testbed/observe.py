"""Observation: the calls served, by action and by caller, and how long they took."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from typing import Any

import authorize
import contract

CALLS: dict[str, int] = {}


# Seconds the emulator spent serving each action (benchmarks: where a run's wall time goes).
SERVED_S: dict[str, float] = {}


# When each action was first and last served (monotonic seconds): a benchmark's span of calls.
SPANS: dict[str, list[float]] = {}


CALLS_LOCK = threading.Lock()


# One request at a time inside moto: EC2 serves each request atomically, and moto's backends
# are plain dicts (a DeregisterImage that iterates the images while another pops one fails with
# a 500 after it deregistered, and the SDK's retry then finds the AMI gone). Faults, slow
# answers and throttling happen outside it.
MOTO_LOCK = threading.Lock()


def read_body(environ: dict[str, Any]) -> bytes:
    """The request's body, read once; wsgi.input is replaced so that moto reads it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


# (caller, IAM action) pairs seen; the caller is the `app/<name>` token the functions put in
# their user agent (the SDK's AppName), the IAM action `<signing service>:<action>`.
CALLERS: set[tuple[str, str]] = set()


CALL_LOG = os.environ.get("AMI_TESTBED_CALL_LOG")


APP = re.compile(r"(?:^|\s)app/([A-Za-z0-9!#$%&'*+\-.^_`|~]+)")


def record_caller(environ: dict[str, Any], action: str) -> None:
    """Records which function called which IAM action (requests without an app name, the tests'
    own set-up calls, are not recorded)."""
    agent = f"{environ.get('HTTP_X_AMZ_USER_AGENT', '')} {environ.get('HTTP_USER_AGENT', '')}"
    app, service = APP.search(agent), contract.signing_service(environ)
    if not app or not service:
        return
    # A target role's session acts with that role's permissions, not the function's: recorded
    # apart (the function's role is checked against what the function itself called).
    who = authorize.caller_of(environ)
    caller = f"target-role:{app.group(1)}" if who is not None and who[0].startswith("@") else app.group(1)
    # The IAM action of SendMessageBatch is sqs:SendMessage.
    action = "SendMessage" if (service, action) == ("sqs", "SendMessageBatch") else action
    pair = (caller, f"{service}:{action}")
    with CALLS_LOCK:
        if pair in CALLERS:
            return
        CALLERS.add(pair)
        if CALL_LOG:
            with open(CALL_LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps({"caller": pair[0], "action": pair[1]}) + "\n")


def count_call(environ: dict[str, Any], body: bytes) -> str | None:
    """Counts query-protocol actions (EC2), JSON-protocol targets (EventBridge, SSM, KMS) and
    EventBridge Scheduler's REST operations."""
    action = None
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action = target.split(".")[-1]
    elif contract.signing_service(environ) == "scheduler":
        # REST-JSON (EventBridge Scheduler API reference): the method and the path name it.
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        one = path.startswith("/schedules/")
        action = {
            ("POST", True): "CreateSchedule",
            ("DELETE", True): "DeleteSchedule",
            ("GET", True): "GetSchedule",
            ("PUT", True): "UpdateSchedule",
            ("GET", False): "ListSchedules",
        }.get((method, one))
    else:
        for pair in body.decode("utf-8", "replace").split("&"):
            if pair.startswith("Action="):
                action = pair[len("Action=") :]
                break
    if action:
        with CALLS_LOCK:
            CALLS[action] = CALLS.get(action, 0) + 1
        record_caller(environ, action)
    return action


def calls() -> dict[str, int]:
    with CALLS_LOCK:
        return dict(CALLS)


def times() -> dict[str, float]:
    with CALLS_LOCK:
        return dict(SERVED_S)


def spans() -> dict[str, list[float]]:
    with CALLS_LOCK:
        return {k: list(v) for k, v in SPANS.items()}


def callers() -> dict[str, list[str]]:
    with CALLS_LOCK:
        out: dict[str, list[str]] = {}
        for caller, act in sorted(CALLERS):
            out.setdefault(caller, []).append(act)
    return out


def served(action: str, seconds: float) -> None:
    """moto served a call of `action` in `seconds`: where a run's time goes, and its span."""
    with CALLS_LOCK:
        SERVED_S[action] = SERVED_S.get(action, 0.0) + seconds
        now = time.monotonic()
        SPANS.setdefault(action, [now, now])[1] = now
