"""IAM in the test bed (issue 29): every request a function makes is authorized against the
function's role in template.yaml, as AWS authorizes it, before moto serves it.

- **Who calls.** Each function runs with its own access key, `testbed-<binary>` (the harnesses
  set it); the request's SigV4 credential names it. Requests signed with any other key (a test's
  own set-up) are not evaluated, as an administrator's would not be refused.
- **Its role.** The function's role statements from template.yaml, with every intrinsic function
  resolved for the deployment under test (tests/support/cfn.py): the template's parameter
  defaults, overridden by what the functions' environment says (`AMI_VALIDATION_SUBNET` is
  `!Ref ValidationSubnetId`, so the subnet a test gives is the parameter it deploys) and by
  `POST /_testbed/deploy`.
- **The requests AWS makes.** For each action, one authorization per resource the Service
  Authorization Reference lists for it (RunInstances: the image, the instance, each volume, the
  network interface, the subnet, the security groups), with the context keys AWS sets for that
  action and resource type and their values read from the emulated account (`ec2:Owner`,
  `ec2:ResourceTag/...`, `aws:RequestTag/...`, `aws:TagKeys`, `ec2:CreateAction`,
  `ec2:MetadataHttpTokens`, ...), and the actions AWS authorizes alongside (CreateTags for tags
  at creation, DeleteSnapshot for DeregisterImage's DeleteAssociatedSnapshots, iam:PassRole, the
  KMS calls EC2 makes for an encrypted copy). Only keys the reference lists for the action and
  resource type are sent: a policy condition on any other key matches nothing, as in AWS.
- **The evaluator.** @cloud-copilot/iam-simulate (pinned in tests/support/iam/package.json),
  run as one Node process per test bed (tests/support/iam/authorize.mjs).

A denied request gets the service's own error (`UnauthorizedOperation` for EC2,
`AccessDeniedException` for the JSON services). Every decision is kept (`GET /_testbed/iam`), so
the test run can tell which statements were used.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl

import cfn

ROOT = Path(__file__).resolve().parent.parent.parent
SIDECAR = Path(__file__).resolve().parent / "iam" / "authorize.mjs"
ACCOUNT = "123456789012"

# Function resource in template.yaml -> its binary (the access key `testbed-<binary>`).
FUNCTIONS = cfn.functions(cfn.load_template((ROOT / "template.yaml").read_text()))
KEY_PREFIX = "testbed-"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")

# Global keys the reference lists per action instead (a service sets them only where it says).
PER_ACTION_GLOBALS = ("aws:requesttag/", "aws:resourcetag/", "aws:tagkeys")


class Sidecar:
    """The Node evaluator: one JSON question per line, one answer per line."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None
        self.described: dict[str, dict[str, Any]] = {}
        self.global_keys: list[str] | None = None

    def ask(self, question: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen(
                    ["node", str(SIDECAR)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=SIDECAR.parent
                )
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(question, default=str) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                "the IAM evaluator (tests/support/iam/authorize.mjs) stopped: "
                "run scripts/setup (it installs it with npm ci)"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"IAM evaluator: {answer['error']} (asked {question.get('op')})")
        return answer

    def action(self, action: str) -> dict[str, Any]:
        if action not in self.described:
            self.described[action] = self.ask({"op": "action", "action": action})
        return self.described[action]

    def globals(self) -> list[str]:
        if self.global_keys is None:
            self.global_keys = [k.lower() for k in self.ask({"op": "globals"})["keys"]]
        return self.global_keys


SIDECAR_PROCESS = Sidecar()


def key_allowed(key: str, listed: list[str]) -> bool:
    """Whether a context key is one of `listed` (patterns such as `aws:ResourceTag/${TagKey}`)."""
    lower = key.lower()
    for pattern in listed:
        p = pattern.lower()
        if "${" in p:
            if lower.startswith(p.split("${", 1)[0]):
                return True
        elif p == lower:
            return True
    return False


@functools.lru_cache(maxsize=None)
def allowed_keys(action: str, resource_type: str | None) -> list[str]:
    """The context keys AWS sets for `action` on `resource_type`: the action's own, that resource
    type's row in the reference, and the global keys it does not list per action (read once per
    pair: the reference is pinned)."""
    details = SIDECAR_PROCESS.action(action)
    keys = list(details.get("conditionKeys", []))
    for rt in details.get("resourceTypes", []):
        if rt["name"] == resource_type:
            keys += rt["conditionKeys"]
    globals_ = [g for g in SIDECAR_PROCESS.globals() if not g.startswith(PER_ACTION_GLOBALS)]
    return keys + globals_


@dataclass
class Authorization:
    """One request AWS authorizes: an action on a resource, with its context keys."""

    action: str
    resource: str
    resource_type: str | None
    context: dict[str, Any]
    resource_policy: dict[str, Any] | None = None
    why: str = ""
    # The resource does not exist: EC2 answers NotFound for it, and IAM has nothing to decide on.
    missing: bool = False


@dataclass
class Decision:
    caller: str
    call: str
    authorization: Authorization
    result: str
    allowed_by: list[str] = field(default_factory=list)
    errors: Any = None


# ---------------------------------------------------------------------------------------------
# The deployment: which role each function has.
# ---------------------------------------------------------------------------------------------
class Roles:
    """Each function's resolved role policies for the deployment under test."""

    def __init__(self) -> None:
        self.template = cfn.load_template((ROOT / "template.yaml").read_text())
        self.lock = threading.Lock()
        self.parameters: dict[str, Any] = {}
        self.physical: dict[str, dict[str, str]] = {}
        self.cache: dict[str, list[dict[str, Any]]] = {}
        # A test's own role for a function, in place of the template's (the proofs that the
        # evaluator denies what AWS denies).
        self.overrides: dict[str, list[dict[str, Any]]] = {}
        # A test that provokes denials on purpose names their actions: those are logged as
        # expected (any other denial still fails the IAM check).
        self.denials_expected: set[str] = set()

    def deployment(self) -> cfn.Deployment:
        return cfn.Deployment(self.template, parameters=dict(self.parameters), physical=dict(self.physical))

    def deploy(self, parameters: dict[str, Any]) -> None:
        with self.lock:
            self.parameters.update(parameters)
            self.cache.clear()

    def function_started(self, binary: str, env: dict[str, str]) -> None:
        """What a function's environment says of the deployment: each variable the template sets
        from a parameter or a resource gives that parameter's value or that resource's id."""
        function = next((f for f, b in FUNCTIONS.items() if b == binary), None)
        if function is None:
            return
        variables = dict(
            self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        own = self.template["Resources"][function].get("Properties", {}).get("Environment", {})
        variables.update(own.get("Variables", {}))
        with self.lock:
            for name, source in variables.items():
                if name in env:
                    self._learn(source, env[name])
            self.cache.clear()

    def _learn(self, source: Any, value: str) -> None:
        if not isinstance(source, dict) or len(source) != 1:
            return
        ((kind, arg),) = source.items()
        if not value and kind != "Ref":
            return  # an empty value names no resource (a test's function without one)
        if kind == "Ref" and arg in self.template.get("Resources", {}) and not value:
            return
        if kind == "Ref" and arg in self.template.get("Parameters", {}):
            listed = self.template["Parameters"][arg].get("Type") == "CommaDelimitedList"
            self.parameters[arg] = [v for v in value.split(",") if v] if listed else value
        elif kind == "Ref" and arg in self.template.get("Resources", {}):
            kind_of = self.template["Resources"][arg].get("Type")
            if kind_of == "AWS::SQS::Queue":
                name = value.rstrip("/").rsplit("/", 1)[-1]
                self.physical[arg] = {"Ref": value, "QueueName": name, "Arn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"}
            else:
                self.physical.setdefault(arg, {})["Ref"] = value
        elif kind == "Fn::GetAtt":
            logical, attribute = arg
            self.physical.setdefault(logical, {})[attribute] = value
            if attribute == "Arn" and ":key/" in value:
                self.physical[logical]["Ref"] = value.rsplit("/", 1)[-1]
        elif kind == "Fn::Join" and isinstance(arg[1], dict) and "Ref" in arg[1]:
            self._learn(arg[1], value)
        elif kind == "Fn::If":
            deployment = self.deployment()
            try:
                branch = arg[1] if deployment.condition(arg[0]) else arg[2]
            except KeyError:
                return
            self._learn(branch, value)

    def override(self, binary: str, statements: list[dict[str, Any]]) -> None:
        with self.lock:
            self.overrides[binary] = [
                {"name": "test-override", "policy": {"Version": "2012-10-17", "Statement": statements}}
            ]

    def policies(self, binary: str) -> list[dict[str, Any]]:
        if binary.startswith("@"):
            from testbed import accounts

            target = accounts.target_role(account_of(binary))
            return target["policies"] if target else []
        with self.lock:
            if binary in self.overrides:
                return self.overrides[binary]
            if binary not in self.cache:
                function = next(f for f, b in FUNCTIONS.items() if b == binary)
                raw = self.template["Resources"][function].get("Properties", {}).get("Policies", [])
                deployment = self.deployment()
                policies = []
                for n, policy in enumerate(cfn.listed(raw)):
                    document = sam_policy(policy, deployment)
                    if document is not None:
                        policies.append({"name": f"{function}-{n}", "policy": document})
                self.cache[binary] = policies
            return self.cache[binary]

    def resource_policy(self, logical: str) -> dict[str, Any] | None:
        """A resource's policy (the tool bus's, the outbox's), resolved once per deployment."""
        key = f"resource:{logical}"
        with self.lock:
            if key not in self.cache:
                self.cache[key] = [self._resource_policy(logical) or {}]
            return self.cache[key][0] or None

    def _resource_policy(self, logical: str) -> dict[str, Any] | None:
        resource = self.template.get("Resources", {}).get(logical)
        if resource is None:
            return None
        deployment = self.deployment()
        props = deployment.resolve(resource.get("Properties", {}))
        if "PolicyDocument" in props:
            return props["PolicyDocument"]
        statement = props.get("Statement")
        if statement is not None:
            return {"Version": "2012-10-17", "Statement": cfn.listed(statement)}
        return None

    def role_arn(self, binary: str) -> str:
        if binary.startswith("@"):
            from testbed import accounts

            return f"arn:aws:iam::{account_of(binary)}:role/{accounts.role_name()}"
        function = next(f for f, b in FUNCTIONS.items() if b == binary)
        return f"arn:aws:iam::{ACCOUNT}:role/{function}Role"


def sam_policy(policy: Any, deployment: cfn.Deployment) -> dict[str, Any] | None:
    """An entry of a SAM function's `Policies` as the IAM policy SAM makes of it."""
    resolved = deployment.resolve(policy)
    if isinstance(resolved, dict) and "Statement" in resolved:
        return {"Version": "2012-10-17", "Statement": cfn.listed(resolved["Statement"])}
    if isinstance(resolved, dict) and "SQSSendMessagePolicy" in resolved:
        name = resolved["SQSSendMessagePolicy"]["QueueName"]
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["sqs:SendMessage*"],
                    "Resource": f"arn:aws:sqs:{deployment.region}:{deployment.account}:{name}",
                }
            ],
        }
    if isinstance(resolved, dict) and "PolicyDocument" in resolved:
        return resolved["PolicyDocument"]
    raise ValueError(f"tests/support/authorize.py does not know this entry of Policies: {policy}")


ROLES: Roles | None = None


def roles() -> Roles:
    global ROLES
    if ROLES is None:
        ROLES = Roles()
    return ROLES


# ---------------------------------------------------------------------------------------------
# The request as AWS sees it.
# ---------------------------------------------------------------------------------------------
@dataclass
class Call:
    """One request: its caller, service, action, region and parameters."""

    caller: str
    service: str
    action: str
    region: str
    query: list[tuple[str, str]]
    document: dict[str, Any]
    path: str = ""

    def values(self, name: str) -> list[str]:
        """EC2 query values of `name` and `name.N` (in order)."""
        exact = [v for k, v in self.query if k == name]
        numbered = sorted(
            (
                (int(k[len(name) + 1 :]), v)
                for k, v in self.query
                if k.startswith(name + ".") and k[len(name) + 1 :].isdigit()
            )
        )
        return exact + [v for _, v in numbered]

    def value(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    def tag_specifications(self, resource_type: str) -> dict[str, str]:
        """The tags a create call gives resources of `resource_type` (TagSpecification.N)."""
        out: dict[str, str] = {}
        specs: dict[str, dict[str, Any]] = {}
        for k, v in self.query:
            m = re.match(r"TagSpecification\.(\d+)\.(ResourceType|Tag\.(\d+)\.(Key|Value))$", k)
            if not m:
                continue
            spec = specs.setdefault(m.group(1), {"tags": {}})
            if m.group(2) == "ResourceType":
                spec["type"] = v
            else:
                spec["tags"].setdefault(m.group(3), {})[m.group(4)] = v
        for spec in specs.values():
            if spec.get("type") == resource_type:
                for tag in spec["tags"].values():
                    out[tag.get("Key", "")] = tag.get("Value", "")
        return out

    def tag_types(self) -> set[str]:
        return {v for k, v in self.query if re.match(r"TagSpecification\.\d+\.ResourceType$", k)}

    def tags(self) -> dict[str, str]:
        """CreateTags/DeleteTags' `Tag.N.Key`/`Tag.N.Value`."""
        found: dict[str, dict[str, str]] = {}
        for k, v in self.query:
            m = re.match(r"Tag\.(\d+)\.(Key|Value)$", k)
            if m:
                found.setdefault(m.group(1), {})[m.group(2)] = v
        return {t.get("Key", ""): t.get("Value", "") for t in found.values()}


def caller_of(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(caller, signing region, signing service) of a request signed with a function's key (the
    caller is its binary) or with credentials AssumeRole gave (`@<account>/<session>`: a target
    role's session), else None."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = _CREDENTIAL.search(auth)
    if not m:
        return None
    if m.group(1).startswith(KEY_PREFIX):
        return m.group(1)[len(KEY_PREFIX) :], m.group(2), m.group(3)
    from testbed import accounts

    session = accounts.assumed(m.group(1))
    if session is None:
        return None
    return f"@{session[0]}/{session[1]}", m.group(2), m.group(3)


def account_of(caller: str) -> str:
    """The account a caller acts in: a target role session's, else the stack's."""
    return caller[1:13] if caller.startswith("@") else ACCOUNT


#: The account of the call being evaluated (set by the gate, under moto's lock).
CURRENT_ACCOUNT = [ACCOUNT]


def current_account() -> str:
    return CURRENT_ACCOUNT[0]


def parse(environ: dict[str, Any], body: bytes) -> Call | None:
    who = caller_of(environ)
    if who is None:
        return None
    binary, region, service = who
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action = target.rsplit(".", 1)[-1]
        try:
            document = json.loads(body) if body.strip() else {}
        except ValueError:
            document = {}
        return Call(binary, service, action, region, [], document)
    if service in ("ec2", "sts"):
        query = environ.get("QUERY_STRING")
        pairs = parse_qsl(query, keep_blank_values=True) if query else []
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        action = dict(pairs).get("Action", "")
        return Call(binary, service, action, region, pairs, {})
    method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
    document = {}
    if body.strip():
        try:
            document = json.loads(body)
        except ValueError:
            document = {}
    query = environ.get("QUERY_STRING")
    pairs = parse_qsl(query, keep_blank_values=True) if query else []
    return Call(binary, service, rest_action(service, method, path), region, pairs, document, path)


def rest_action(service: str, method: str, path: str) -> str:
    if service == "scheduler" and path.startswith("/schedules/"):
        return {
            "POST": "CreateSchedule",
            "DELETE": "DeleteSchedule",
            "GET": "GetSchedule",
            "PUT": "UpdateSchedule",
        }.get(method, method)
    if service == "rbin":
        if path == "/list-rules":
            return "ListRules"
        if path.startswith("/rules/") and method == "GET":
            return "GetRule"
        if path == "/rules" and method == "POST":
            return "CreateRule"
    return f"{method} {path}"


# ---------------------------------------------------------------------------------------------
# The evaluation.
# ---------------------------------------------------------------------------------------------
DECISIONS: list[Decision] = []
DECISIONS_LOCK = threading.Lock()
ENABLED = [os.environ.get("AMI_TESTBED_IAM", "on") != "off"]
# Every distinct decision of the whole test run, one JSON line each (scripts/test sets it; the
# IAM check reads it: no denial, nothing unevaluated, every statement used).
IAM_LOG = os.environ.get("AMI_TESTBED_IAM_LOG")
LOGGED: set[str] = set()


def log(entry: dict[str, Any]) -> None:
    if not IAM_LOG:
        return
    line = json.dumps(entry, sort_keys=True)
    with DECISIONS_LOCK:
        if line in LOGGED:
            return
        LOGGED.add(line)
        with open(IAM_LOG, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def authorize(call: Call, requests: list[Authorization]) -> Decision | None:
    """Evaluates every authorization of a call; the first denial, or None when all are allowed."""
    r = roles()
    policies = r.policies(call.caller)
    denied = None
    for request in requests:
        if request.missing:
            # EC2 answers NotFound for it; IAM has nothing to decide on. Logged, never hidden.
            log(
                {
                    "caller": call.caller,
                    "call": f"{call.service}:{call.action}",
                    "action": request.action,
                    "resource_type": request.resource_type,
                    "result": "Missing",
                    "allowed_by": [],
                }
            )
            continue
        context = {
            k: v
            for k, v in request.context.items()
            if key_allowed(k, allowed_keys(request.action, request.resource_type))
        }
        acting = account_of(call.caller)
        session = call.caller.rsplit("/", 1)[-1]
        question: dict[str, Any] = {
            "op": "simulate",
            "principal": f"arn:aws:sts::{acting}:assumed-role/{r.role_arn(call.caller).rsplit('/', 1)[-1]}/{session}",
            "action": request.action,
            "resource": request.resource,
            "account": resource_account(request.resource, acting),
            "context": {**principal_context(call), **context},
            "policies": policies,
        }
        if request.resource_policy is not None:
            question["resourcePolicy"] = request.resource_policy
        answer = SIDECAR_PROCESS.ask(question)
        decision = Decision(
            call.caller,
            f"{call.service}:{call.action}",
            request,
            answer["result"],
            answer.get("allowedBy", []),
            answer.get("errors"),
        )
        with DECISIONS_LOCK:
            DECISIONS.append(decision)
        if call.caller not in r.overrides:  # a proof's own role says nothing of the template's
            log(
                {
                    "caller": call.caller,
                    "call": decision.call,
                    "action": request.action,
                    "resource_type": request.resource_type,
                    "result": answer["result"],
                    "allowed_by": sorted(s for s in answer.get("allowedBy", []) if s),
                    **(
                        {"expected": True}
                        if request.action in r.denials_expected and answer["result"] != "Allowed"
                        else {}
                    ),
                }
            )
        if answer["result"] != "Allowed" and denied is None:
            denied = decision
    return denied


def resource_account(arn: str, caller_account: str = ACCOUNT) -> str:
    """The account a resource belongs to: its ARN's, else the caller's (an image ARN names none:
    `ec2:Owner` says whose it is)."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[4].isdigit() else caller_account


def principal_context(call: Call) -> dict[str, Any]:
    role = roles().role_arn(call.caller)
    return {
        "aws:PrincipalArn": role,
        "aws:PrincipalAccount": account_of(call.caller),
        "aws:RequestedRegion": call.region,
        "aws:PrincipalType": "AssumedRole",
        "aws:SecureTransport": "true",
    }


def report() -> dict[str, Any]:
    """Every decision so far: what each function called, what was denied, which statements
    allowed something."""
    with DECISIONS_LOCK:
        decisions = list(DECISIONS)
    return {
        "decisions": [
            {
                "caller": d.caller,
                "call": d.call,
                "action": d.authorization.action,
                "resource": d.authorization.resource,
                "result": d.result,
                "allowed_by": d.allowed_by,
                "why": d.authorization.why,
                "context": d.authorization.context,
                **({"errors": d.errors} if d.errors else {}),
            }
            for d in decisions
        ],
    }


Builder = Callable[[Call, Any], list[Authorization]]
