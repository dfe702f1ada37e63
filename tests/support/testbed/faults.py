"""Injected faults and EC2's request throttling (token buckets per account and region)."""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.wrappers import Response

from .observe import CALLS_LOCK

# Injected faults: action -> [error code, how many more calls get it]. Test set-up only: the
# errors are EC2's own codes (RequestLimitExceeded, InvalidSnapshot.InUse, ...), answered in
# EC2's XML error format, so the real SDK sees exactly what EC2 would send.
FAULTS: dict[str, list[Any]] = {}


# Throttling as EC2 does it (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html:
# token buckets per account and region, RequestLimitExceeded when empty):
# each bucket holds `size` tokens in each region, refilled at `refill` per second; a call of an
# action in the bucket takes a token of its region's bucket or is answered RequestLimitExceeded.
# Scaled-down buckets make a large run's pacing measurable in seconds.
BUCKETS: dict[str, dict[str, Any]] = {}


def take_token(action: str, region: str) -> bool:
    import time as _time

    with CALLS_LOCK:
        for bucket in BUCKETS.values():
            if action not in bucket["actions"]:
                continue
            now = _time.monotonic()
            state = bucket["regions"].setdefault(region, {"tokens": bucket["size"], "at": now})
            state["tokens"] = min(bucket["size"], state["tokens"] + (now - state["at"]) * bucket["refill"])
            state["at"] = now
            if state["tokens"] < 1:
                bucket["throttled"] += 1
                return False
            state["tokens"] -= 1
    return True


def ec2_error(code: str, message: str, status: int, request_id: str) -> Response:
    """An error in EC2's XML error format (as EC2 and the SDKs' ec2 protocol parsers have it)."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
    )
    return Response(body, status=status, mimetype="text/xml")


def dropped() -> Response:
    """A dropped connection: headers promise a body that never comes."""

    def broken() -> Any:
        yield b"<?xml"
        raise ConnectionAbortedError("dropped by the test bed")

    return Response(broken(), status=200, headers={"Content-Length": "4096"}, mimetype="text/xml")


# `LOSE`: the call is executed, then its response is lost (the connection drops): EC2 did it,
# and the client never heard. The real idempotency hazard of every mutating call.
LOSE = Response("lose", status=599)


def fault_response(action: str, region: str, json_protocol: bool = False) -> Response | None:
    if not take_token(action, region):
        return ec2_error("RequestLimitExceeded", "Request limit exceeded.", 503, "throttle")
    with CALLS_LOCK:
        fault = FAULTS.get(action)
        if not fault or fault[1] <= 0:
            return None
        fault[1] -= 1
        code = fault[0]
    if code.startswith("SLOW:"):
        # A slow answer: wait, then serve the call normally.
        import time as _time

        _time.sleep(int(code.split(":", 1)[1]) / 1000)
        return None
    if code == "DROP":
        return dropped()
    if code == "HANG":
        # A call that never answers (the client's timeouts must end it): hold the connection,
        # then drop it without serving the call.
        import time as _time

        _time.sleep(120)
        return dropped()
    if code == "LOSE":
        return LOSE
    status = {"RequestLimitExceeded": 503, "InternalError": 500, "Unavailable": 503}.get(code, 400)
    if json_protocol:
        # KMS, SSM, EventBridge: their JSON error format.
        body = json.dumps({"__type": code, "message": "injected by the test bed"})
        return Response(
            body,
            status=status,
            content_type="application/x-amz-json-1.1",
            headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": "fault"},
        )
    return ec2_error(code, "injected by the test bed", status, "fault")


def set_fault(body: dict[str, Any]) -> dict[str, Any]:
    """`POST /_testbed/faults`: the next `count` calls of `action` are answered with `code`."""
    with CALLS_LOCK:
        FAULTS[body["action"]] = [body["code"], int(body.get("count", 1))]
    return {}


def throttle(body: dict[str, Any] | None) -> dict[str, Any]:
    """`/_testbed/throttle`: a POST sets the buckets; both answer how many calls each throttled."""
    with CALLS_LOCK:
        if body is not None:
            BUCKETS.clear()
            for name, b in body.items():
                BUCKETS[name] = {
                    "actions": set(b["actions"]),
                    "size": float(b["size"]),
                    "refill": float(b["refill"]),
                    "regions": {},
                    "throttled": 0,
                }
        return {k: {"throttled": v["throttled"]} for k, v in BUCKETS.items()}
