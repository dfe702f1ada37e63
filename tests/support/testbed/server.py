"""The test bed's server: the test-only routes (one table), the gate, faults, then moto.

Usage: python tests/support/moto_launcher.py [--port N] [--plain] [--no-contract] [--no-iam]
Prints `READY <port>` on stdout once it accepts connections; stops when stdin closes (the test
process that started it ended) or on SIGTERM. `--plain` serves moto as it is (no patches, no
contract check), so the tests can show what each patch changes; `--no-contract` keeps the patches
and drops only the contract check, so a test can show a request the contract refuses is accepted
without it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import authorize
import contract
from moto.events.models import EventsBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from . import (
    accounts,
    common,
    consistency,
    events,
    faults,
    gate,
    images,
    instances,
    kms,
    launch_templates,
    observe,
    recycle_bin,
    references,
    scheduler,
    seed,
    sharing,
    snapshots,
    ssm,
    usage_reports,
)
from .observe import CALLS, CALLS_LOCK, MOTO_LOCK

#: How a harness starts the test bed, what a function's environment holds, the test-only routes.
DESCRIPTION: dict[str, Any] = json.loads(
    open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "description.json")).read()
)

#: The sections whose `patch()` puts EC2's documented behaviours in place of moto's.
SECTIONS = (
    common,
    images,
    snapshots,
    consistency,
    instances,
    launch_templates,
    references,
    sharing,
    recycle_bin,
    usage_reports,
    kms,
    ssm,
)

#: A test-only route: what it answers, given the request's JSON body (`{}` when empty) and its
#: WSGI environment; and whether it runs under moto's lock (it reads or changes moto's state).
Handler = Callable[[Any, dict[str, Any]], Any]


def _roles() -> Any:
    return authorize.roles()


def _expect_denials(body: dict[str, Any]) -> dict[str, Any]:
    _roles().denials_expected = set(body.get("actions", []))
    return {}


ROUTES: dict[str, tuple[Handler, bool]] = {
    "/_testbed/image": (lambda body, environ: seed.seed_image(body), True),
    "/_testbed/fleet": (lambda body, environ: seed.seed_fleet(body), True),
    "/_testbed/instance": (lambda body, environ: instances.set_instance(body), True),
    "/_testbed/instance-profile": (lambda body, environ: instances.instance_profile(body), True),
    "/_testbed/usage-report": (lambda body, environ: usage_reports.complete_usage_report(body), True),
    "/_testbed/clock": (lambda body, environ: consistency.clock(body), True),
    "/_testbed/scheduler": (lambda body, environ: scheduler.scheduler(body), True),
    "/_testbed/ssm": (lambda body, environ: ssm.ssm(body), True),
    "/_testbed/kms": (lambda body, environ: kms.kms_clock(body), True),
    "/_testbed/faults": (lambda body, environ: faults.set_fault(body), False),
    "/_testbed/throttle": (
        lambda body, environ: faults.throttle(body if environ.get("REQUEST_METHOD") == "POST" else None),
        False,
    ),
    "/_testbed/signing-key": (lambda body, environ: {"key_arn": kms.signing_key()}, True),
    "/_testbed/event-outbox": (
        lambda body, environ: {"url": events.event_outbox(environ.get("HTTP_HOST", "127.0.0.1"))},
        True,
    ),
    "/_testbed/distribute-queue": (
        lambda body, environ: {"url": accounts.distribute_queue(environ.get("HTTP_HOST", "127.0.0.1"))},
        True,
    ),
    "/_testbed/accounts": (lambda body, environ: accounts.accounts(body), False),
    "/_testbed/organization": (lambda body, environ: accounts.organization(body), True),
    "/_testbed/function": (
        lambda body, environ: _roles().function_started(body["name"], body.get("env", {})) or {},
        True,
    ),
    "/_testbed/deploy": (lambda body, environ: _roles().deploy(body.get("parameters", {})) or {}, True),
    "/_testbed/role": (lambda body, environ: _roles().override(body["name"], body["statements"]) or {}, True),
    "/_testbed/expect-denials": (lambda body, environ: _expect_denials(body), True),
    "/_testbed/events": (lambda body, environ: events.PUBLISHED, False),
    "/_testbed/calls": (lambda body, environ: observe.calls(), False),
    "/_testbed/times": (lambda body, environ: observe.times(), False),
    "/_testbed/spans": (lambda body, environ: observe.spans(), False),
    "/_testbed/callers": (lambda body, environ: observe.callers(), False),
    "/_testbed/iam": (lambda body, environ: gate.iam_report(), False),
}

if set(ROUTES) != set(DESCRIPTION["routes"]):
    raise SystemExit(
        f"the test bed's routes and description.json disagree: {sorted(set(ROUTES) ^ set(DESCRIPTION['routes']))}"
    )


def apply_patches() -> None:
    for section in SECTIONS:
        section.patch()


def json_response(out: Any, status: int = 200) -> Response:
    return Response(json.dumps(out), status=status, mimetype="application/json")


class Testbed:
    def __init__(self, app: Any, check_contract: bool = True, check_iam: bool = True):
        self.app = app
        self.check_contract = check_contract
        self.check_iam = check_iam
        gate.IAM_ENABLED[0] = check_iam

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        route = ROUTES.get(environ.get("PATH_INFO", ""))
        if route is not None:
            return self.test_route(route, environ)(environ, start_response)
        body = observe.read_body(environ)
        if contract.signing_service(environ) == "rbin" and self.check_contract:
            return self.recycle_bin(environ, body)(environ, start_response)
        return self.aws(environ, body, start_response)

    def test_route(self, route: tuple[Handler, bool], environ: dict[str, Any]) -> Response:
        """A test-only route: its JSON answer, or 400 for a request that lacks what it needs."""
        handler, under_moto_lock = route
        try:
            body = json.loads(Request(environ).get_data() or b"{}")
            if under_moto_lock:
                with MOTO_LOCK:
                    return json_response(handler(body, environ))
            return json_response(handler(body, environ))
        except (KeyError, ValueError) as err:  # a set-up request that lacks a field, or no JSON
            return json_response({"error": repr(err)}, 400)

    def recycle_bin(self, environ: dict[str, Any], body: bytes) -> Response:
        """A Recycle Bin request (REST, not EC2's query protocol): counted, authorized, served."""
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        operation = {("POST", "/rules"): "CreateRule", ("POST", "/list-rules"): "ListRules"}.get(
            (method, path), "GetRule" if method == "GET" and path.startswith("/rules/") else f"{method} {path}"
        )
        with CALLS_LOCK:
            CALLS[operation] = CALLS.get(operation, 0) + 1
        observe.record_caller(environ, operation)
        denial = gate.authorize_call(environ, body) if self.check_iam else None
        if denial is not None:
            return denial
        injected = faults.fault_response(operation, contract.signing_region(environ), True)
        if injected is not None and injected is not faults.LOSE:
            return injected
        with MOTO_LOCK:
            return recycle_bin.rbin_response(environ, body)

    def refusal(self, environ: dict[str, Any], body: bytes) -> Response | None:
        """The gate's answer to a request AWS would refuse (its contract, then IAM), or None."""
        if self.check_contract:
            violation = contract.check_request(environ, body)
            if violation is not None:
                return gate.contract_response(violation)
        if self.check_iam:
            return gate.authorize_call(environ, body)
        return None

    def aws(self, environ: dict[str, Any], body: bytes, start_response: Any) -> Any:
        """An AWS request: counted (a refused call counts too: the SDK made it), gated, faulted,
        then served by moto under its lock."""
        action = observe.count_call(environ, body)
        refused = self.refusal(environ, body)
        if refused is not None:
            return refused(environ, start_response)

        region = contract.signing_region(environ)
        injected = faults.fault_response(action, region, "HTTP_X_AMZ_TARGET" in environ) if action else None
        if injected is faults.LOSE:
            self.serve_and_lose(environ)
            return faults.dropped()(environ, start_response)
        if injected is not None:
            return injected(environ, start_response)

        served, seconds = self.serve(environ, start_response)
        consistency.note_created(action, environ, body, served)
        if action:
            observe.served(action, seconds)
        return served

    def serve(self, environ: dict[str, Any], start_response: Any) -> tuple[list[bytes], float]:
        """moto's answer, and the seconds it took (moto's lock held)."""
        with MOTO_LOCK:
            started = time.perf_counter()
            if ssm.SSM_VALIDATING:
                ssm.settle_parameters()  # every read answers what SSM has validated by now
            answer = self.app(environ, start_response)
            try:
                return list(answer), time.perf_counter() - started
            finally:
                if hasattr(answer, "close"):
                    answer.close()

    def serve_and_lose(self, environ: dict[str, Any]) -> None:
        """Runs the call to the end and throws its answer away (`LOSE`)."""
        with MOTO_LOCK:
            served = self.app(environ, lambda status, headers, exc_info=None: None)
            for _ in served:
                pass
            if hasattr(served, "close"):
                served.close()


def create_stack_resources() -> None:
    """The tool's bus and the dead-man switch's schedule group, as the template makes them
    (`${AWS::StackName}-ami-lifecycle` and `DeadManGroup`, the stack named ami-lifecycle)."""
    from moto.events.models import events_backends
    from moto.scheduler.models import scheduler_backends

    account, region, stack = DESCRIPTION["account"], DESCRIPTION["region"], DESCRIPTION["stack"]
    events_backends[account][region].create_event_bus(stack["bus"])
    scheduler_backends[account][region].create_schedule_group(stack["dead_man_group"], [])


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="moto as it is: no EC2 patches, no contract check")
    parser.add_argument(
        "--no-contract", action="store_true", help="the EC2 patches without the contract check (contract.py)"
    )
    parser.add_argument(
        "--no-iam",
        action="store_true",
        help="no IAM evaluation of the functions' requests (authorize.py); also AMI_TESTBED_IAM=off",
    )
    return parser.parse_args()


def until_stopped(plain: bool) -> threading.Event:
    """The event set when stdin closes or SIGTERM comes; the due schedules run meanwhile."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        try:
            while sys.stdin.read(1):
                pass
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    scheduler.SCHEDULER_RUNS[0] = not plain
    if not plain:

        def run_schedules() -> None:
            while not stop.wait(1.0):
                with MOTO_LOCK:
                    scheduler.run_due_schedules()

        threading.Thread(target=run_schedules, daemon=True).start()
    return stop


def main() -> None:
    args = arguments()
    EventsBackend.put_events = events.put_events  # observation only: changes no behaviour
    if not args.plain:
        apply_patches()
        create_stack_resources()

    testbed = Testbed(
        DomainDispatcherApplication(create_backend_app),
        check_contract=not (args.plain or args.no_contract),
        check_iam=not (args.plain or args.no_iam or not authorize.ENABLED[0]),
    )
    server = make_server("127.0.0.1", args.port, testbed, True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"{DESCRIPTION['ready']}{server.server_address[1]}", flush=True)

    until_stopped(args.plain).wait()
    server.shutdown()
