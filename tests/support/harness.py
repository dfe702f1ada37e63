"""The one harness the demo and the benchmarks share: the local EC2 emulator (the test bed,
`moto_launcher.py`) and a function's real binary driven through the Lambda runtime API
(`cargo lambda watch` + `cargo lambda invoke`).

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
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import boto3
import cfn

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(os.environ.get("AMI_VENV", ROOT / ".venv"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# The stack's functions (their binaries), as template.yaml names them.
FUNCTIONS = tuple(cfn.functions(cfn.load_template((ROOT / "template.yaml").read_text())).values())
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


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
            [str(VENV / "bin" / "python"), str(ROOT / "tests" / "support" / "moto_launcher.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY "):
            raise SystemExit(f"the EC2 emulator did not start: {line!r}")
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # The stack's HMAC key (template.yaml `SigningKey`), which every function is given.
        self.signing_key = self._get("signing-key")["key_arn"]

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def client(self, service: str, region: str):
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint, **CREDENTIALS)

    def ec2(self, region: str):
        return self.client("ec2", region)

    def _get(self, route: str):
        return json.loads(urllib.request.urlopen(f"{self.endpoint}/_testbed/{route}").read())

    def _post(self, route: str, body: dict) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/_testbed/{route}", data=json.dumps(body).encode(), method="POST"
        )
        urllib.request.urlopen(request).read()

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
        self.proc = subprocess.Popen(
            [
                str(VENV / "bin" / "cargo-lambda"),
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                str(self.port),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, "cargo lambda watch")

    def runtime_env(self, policies: Path, endpoint: str | None = None) -> dict[str, str]:
        """The environment Lambda gives a function, pointed at this runtime API and the emulator."""
        env = {k: v for k, v in os.environ.items() if k != "AMI_POLICIES"}
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.port}/.rt",
                "AWS_LAMBDA_FUNCTION_NAME": "_",
                "AWS_LAMBDA_FUNCTION_VERSION": "1",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AMI_POLICIES_FILE": str(policies),
                "RUST_LOG": "warn",
            }
        )
        if endpoint:
            env["AWS_ENDPOINT_URL"] = endpoint
        return env

    def invoke(self, payload: dict, died: "Callable[[], str | None] | None" = None) -> tuple[bool, dict | str]:
        """Invokes the function through the runtime API: (True, answer) or (False, the error).
        `died` says why the function's process is gone (an invocation would wait for ever)."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(payload, f)
        try:
            with subprocess.Popen(
                [
                    str(VENV / "bin" / "cargo-lambda"),
                    "lambda",
                    "invoke",
                    "_",
                    "--invoke-address",
                    "127.0.0.1",
                    "--invoke-port",
                    str(self.port),
                    "--data-file",
                    f.name,
                    "--output-format",
                    "json",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ) as call:
                while True:
                    try:
                        stdout, stderr = call.communicate(timeout=1)
                        break
                    except subprocess.TimeoutExpired:
                        why = died() if died else None
                        if why is not None:
                            call.kill()
                            raise RuntimeError(f"the function exited before it answered: {why}") from None
        finally:
            os.unlink(f.name)
        if call.returncode == 0:
            return True, json.loads(stdout)
        return False, stdout + stderr

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Function:
    """A function's binary running against the emulator, invoked through its own runtime API.

    `env` adds to (or, with None values, removes from) the function's environment."""

    def __init__(self, emu: Emulator, name: str, policies: Path, env: dict[str, str | None] | None = None) -> None:
        self.watch = Watch()
        environment = self.watch.runtime_env(policies, emu.endpoint)
        environment["AMI_SIGNING_KEY_ARN"] = emu.signing_key
        # The tool's bus the template makes for a stack named ami-lifecycle (the emulator has it).
        environment["EVENT_BUS_NAME"] = "ami-lifecycle-ami-lifecycle"
        # The role the launch tests' dead-man schedules act as (template.yaml `DeadManRole`).
        environment["AMI_DEADMAN_ROLE_ARN"] = "arn:aws:iam::123456789012:role/ami-lifecycle-dead-man"
        environment["AMI_DEADMAN_GROUP"] = "ami-lifecycle-dead-man"
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        # Its own credentials: the emulator authorizes each request against this function's
        # role in template.yaml (tests/support/authorize.py), resolved with this environment.
        environment["AWS_ACCESS_KEY_ID"] = f"testbed-{name}"
        emu._post(
            "function",
            {"name": name, "env": {k: v for k, v in environment.items() if k.startswith(("AMI_", "EVENT_", "ALLOW_"))}},
        )
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([str(binary(name))], env=environment, stdout=self.log, stderr=self.log)

    def __enter__(self) -> "Function":
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def invoke(self, payload: dict) -> tuple[bool, dict | str]:
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
