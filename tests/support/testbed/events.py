"""EventBridge: the events PutEvents accepted (observation) and the stack's event outbox."""

from __future__ import annotations

import json
from typing import Any

from moto.events.models import EventsBackend

# ---------------------------------------------------------------------------------------------
# Observation: the events accepted by PutEvents, so tests can read what a function announced.
# ---------------------------------------------------------------------------------------------
PUBLISHED: list[dict[str, Any]] = []


_moto_put_events = EventsBackend.put_events


def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries = _moto_put_events(self, events)
    for event, entry in zip(events, entries, strict=True):
        if not entry.get("ErrorCode"):
            PUBLISHED.append(
                {
                    "region": self.region_name,
                    "bus": event.get("EventBusName") or "default",
                    "source": event.get("Source"),
                    "detail_type": event.get("DetailType"),
                    "resources": event.get("Resources", []),
                    "detail": json.loads(event.get("Detail") or "{}"),
                }
            )
    return entries


# The event outbox (template.yaml, EventOutbox): an SQS queue whose redrive policy moves a
# message received once and not deleted to the failure queue (SQS Developer Guide, "Using
# dead-letter queues": maxReceiveCount). Made at the first call, as the stack makes it.
OUTBOX: list[str] = []


def event_outbox(host: str) -> str:
    from moto.sqs.models import sqs_backends

    if not OUTBOX:
        backend = sqs_backends["123456789012"]["us-east-1"]
        failures = backend.create_queue("ami-lifecycle-failures")
        backend.create_queue(
            "ami-lifecycle-event-outbox",
            VisibilityTimeout="900",
            RedrivePolicy=json.dumps({"deadLetterTargetArn": failures.queue_arn, "maxReceiveCount": 1}),
        )
        OUTBOX.append(f"http://{host}/123456789012/ami-lifecycle-event-outbox")
    return OUTBOX[0]
