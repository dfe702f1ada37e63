"""The one harness the demo and the benchmarks share: the local EC2 emulator (the test bed,
`testbed/`, as `testbed/description.json` describes it) and a function's real binary driven through the Lambda runtime API
(`cargo lambda watch`, invoked through its runtime API's invoke endpoint, as the Rust harness does).

    with Emulator() as emu, Function(emu, "ami-age-out", policies=path) as fn:
        ok, report = fn.invoke({"dry_run": True})

Paths come from the environment the `scripts/*` wrappers set: `AMI_VENV` (the virtualenv with
moto and cargo-lambda), `CARGO_TARGET_DIR` and `AMI_PROFILE` (debug or release).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import boto3
import cfn

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(os.environ.get("AMI_VENV", ROOT / ".venv"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# The stack's functions (their binaries), as template.yaml names them.
FUNCTIONS = tuple(cfn.functions(cfn.load_template((ROOT / "template.yaml").read_text())).values())
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# How the test bed starts, what a function's environment holds, the stack's resources and the
# test-only routes: described once, for this harness, the Rust one and the server.
DESCRIPTION = json.loads((ROOT / "tests" / "support" / "testbed" / "description.json").read_text())


def binary(name: str, profile: str | None = None) -> Path:
    """The built binary of a function, in the profile `AMI_PROFILE` names (debug by default)."""
    return TARGET / (profile or os.environ.get("AMI_PROFILE", "debug")) / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, what: str, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not start listening on port {port}")


class Emulator:
    """The test bed on a free port; its test-only routes (`/_testbed/...`) as methods."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "python"), str(ROOT / DESCRIPTION["launcher"])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith(DESCRIPTION["ready"]):
            raise SystemExit(f"the EC2 emulator did not start: {line!r}")
        self.port = int(line[len(DESCRIPTION["ready"]) :])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # The stack's resources the test bed made (the HMAC key, the event outbox).
        self.stack = {name: self._stack_resource(name) for name in ("signing_key", "event_outbox", "distribute_queue")}
        self.signing_key = self.stack["signing_key"]

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def client(self, service: str, region: str):
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint, **CREDENTIALS)

    def ec2(self, region: str):
        return self.client("ec2", region)

    def _stack_resource(self, name: str) -> str:
        resource = DESCRIPTION["stack"][name]
        answer = json.loads(urllib.request.urlopen(f"{self.endpoint}{resource['route']}").read())
        return answer[resource["field"]]

    def function_env(self, function: str, runtime_port: int) -> dict[str, str]:
        """The environment a function gets (the description's, filled in)."""
        values = {"endpoint": self.endpoint, "function": function, "runtime_port": str(runtime_port), **self.stack}
        return {k: v.format(**values) for k, v in DESCRIPTION["function_environment"].items()}

    def _get(self, route: str):
        return json.loads(urllib.request.urlopen(f"{self.endpoint}/_testbed/{route}").read())

    def _post(self, route: str, body: dict) -> Any:
        request = urllib.request.Request(
            f"{self.endpoint}/_testbed/{route}", data=json.dumps(body).encode(), method="POST"
        )
        return json.loads(urllib.request.urlopen(request, timeout=3600).read() or b"null")

    def seed(self, region: str, image_id: str, **fields) -> None:
        """Sets fields EC2 sets itself (creation_date, last_launched_time, ...) on an image."""
        self._post("image", {"region": region, "image_id": image_id, **fields})

    def complete_usage_report(self, region: str, image_id: str, entries: list[dict]) -> None:
        """EC2 finishes the image's pending usage report with these entries
        (`{"account_id", "resource_type", "usage_count"}`)."""
        self._post("usage-report", {"region": region, "image_id": image_id, "entries": entries})

    def pass_image(self, region: str, image_id: str, policy: str) -> None:
        """Tags an AMI with a `passed` verdict as ami-publish writes it: sealed with the stack's
        key over the bytes `ami_lifecycle::domain::seal::verdict` makes, so the gate accepts it."""
        at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = (
            f"ami-automation verdict v1\nimage={image_id}\nregion={region}\npolicy={policy}\nverdict=passed\nat={at}"
        )
        mac = self.client("kms", "us-east-1").generate_mac(
            KeyId=self.signing_key, MacAlgorithm="HMAC_SHA_256", Message=message.encode()
        )["Mac"]
        self.ec2(region).create_tags(
            Resources=[image_id],
            Tags=[
                {"Key": "ami-automation:validation", "Value": "passed"},
                {"Key": "ami-automation:validation-seal", "Value": f"{at} {base64.b64encode(mac).decode()}"},
            ],
        )

    def set_instance(self, instance_id: str, **fields) -> None:
        """What EC2 reports for an instance: `system_status`, `instance_status`, `console`."""
        self._post("instance", {"instance_id": instance_id, **fields})

    def seed_fleet(self, region: str, instance_id: str, count: int, **fields) -> int:
        """`count` AMIs made from `instance_id` straight in the backend (scale benchmarks)."""
        request = urllib.request.Request(
            f"{self.endpoint}/_testbed/fleet",
            method="POST",
            data=json.dumps({"region": region, "instance_id": instance_id, "count": count, **fields}).encode(),
        )
        return json.loads(urllib.request.urlopen(request, timeout=3600).read())["count"]

    def published(self) -> list[dict]:
        """The events the functions put on EventBridge, in order."""
        return self._get("events")

    def calls(self) -> dict[str, int]:
        """Requests served so far, by action."""
        return self._get("calls")

    def times(self) -> dict[str, float]:
        """Seconds the emulator spent serving each action so far."""
        return self._get("times")

    def spans(self) -> dict[str, list[float]]:
        """When the emulator first and last served each action (monotonic seconds)."""
        return self._get("spans")

    def throttle(self, buckets: dict) -> None:
        """Throttles like EC2: named token buckets over lists of actions."""
        self._post("throttle", buckets)

    def throttle_state(self) -> dict:
        return self._get("throttle")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Watch:
    """`cargo lambda watch` serving only the runtime API on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        serve = [a.replace("{runtime_port}", str(self.port)) for a in DESCRIPTION["runtime_api"]["serve"]]
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "cargo-lambda"), *serve],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, "cargo lambda watch")

    def runtime_env(self, policies: Path) -> dict[str, str]:
        """The environment Lambda gives a function, pointed at this runtime API (no test bed)."""
        env = {k: v for k, v in os.environ.items() if k != "AMI_POLICIES"}
        lambda_env = {k: v for k, v in DESCRIPTION["function_environment"].items() if k.startswith("AWS_LAMBDA_")}
        env.update({k: v.format(runtime_port=self.port) for k, v in lambda_env.items()})
        env.update({"AWS_REGION": DESCRIPTION["region"], "AMI_POLICIES_FILE": str(policies), "RUST_LOG": "warn"})
        env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        return env

    def invoke(self, payload: dict, died: "Callable[[], str | None] | None" = None) -> tuple[bool, Any]:
        """Invokes the function through the runtime API's invoke endpoint, as the Rust harness
        does: (True, answer) or (False, "<errorType>: <errorMessage>"). `died` says why the
        function's process is gone (an invocation would wait for ever)."""
        url = f"http://127.0.0.1:{self.port}{DESCRIPTION['runtime_api']['invoke']}"
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
        answer: dict = {}

        def call() -> None:
            try:
                with urllib.request.urlopen(request) as response:
                    answer["body"] = json.loads(response.read() or b"null")
            except urllib.error.HTTPError as err:  # a function error comes back as a 500
                answer["body"] = json.loads(err.read() or b"null")

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        while caller.is_alive():
            caller.join(timeout=1)
            why = died() if died and caller.is_alive() else None
            if why is not None:
                raise RuntimeError(f"the function exited before it answered: {why}")
        if "body" not in answer:
            raise RuntimeError("the runtime API gave no answer")
        body = answer["body"]
        if isinstance(body, dict) and "errorType" in body and "errorMessage" in body:
            return False, f"{body['errorType']}: {body['errorMessage']}"
        return True, body

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Function:
    """A function's binary running against the emulator, invoked through its own runtime API.

    `env` adds to (or, with None values, removes from) the function's environment."""

    def __init__(self, emu: Emulator, name: str, policies: Path, env: Mapping[str, str | None] | None = None) -> None:
        self.watch = Watch()
        environment = {k: v for k, v in os.environ.items() if k != "AMI_POLICIES"}
        environment.update(emu.function_env(name, self.watch.port))
        environment.update({"AMI_POLICIES_FILE": str(policies), "RUST_LOG": "warn"})
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        # Its own credentials, whatever `env` says: the test bed authorizes each request against
        # this function's role.
        environment["AWS_ACCESS_KEY_ID"] = emu.function_env(name, self.watch.port)["AWS_ACCESS_KEY_ID"]
        # Its role in template.yaml is resolved with what its environment says of the deployment.
        described = {
            k: v
            for k, v in environment.items()
            if k in DESCRIPTION["function_environment"] or k.startswith(("AMI_", "EVENT_", "ALLOW_"))
        }
        emu._post("function", {"name": name, "env": described})
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([str(binary(name))], env=environment, stdout=self.log, stderr=self.log)

    def __enter__(self) -> "Function":
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def invoke(self, payload: dict) -> tuple[bool, Any]:
        return self.watch.invoke(payload, self._died)

    def _died(self) -> str | None:
        if self.proc.poll() is None:
            return None
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def peak_rss_kb(self) -> int:
        """The process's peak resident set (`VmHWM`), while it runs."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.watch.stop()


def deliver_units(
    emu: Emulator, function: Function, wanted: Callable[[dict], bool] = lambda _: True
) -> list[tuple[dict, float]]:
    """The distribution queue's units, each delivered to `function` as Lambda's SQS event source
    delivers it (one record), with the invocation's wall time; a unit it names in
    batchItemFailures stays on the queue, one `wanted` refuses (its body) is deleted unserved."""
    sqs, url = emu.client("sqs", "us-east-1"), emu.stack["distribute_queue"]
    served: list[tuple[dict, float]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            if not wanted(json.loads(m["Body"])):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                continue
            record = {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"]}
            started = time.perf_counter()
            ok, report = function.invoke({"Records": [{**record, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}]})
            if not ok:
                raise RuntimeError(f"a unit failed: {report}")
            served.append((report, time.perf_counter() - started))
            if not report["batchItemFailures"]:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return served
