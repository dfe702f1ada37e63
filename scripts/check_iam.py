"""Checks that each function's IAM role in template.yaml allows exactly the AWS calls the
function makes: every call it makes is allowed, and nothing else is, except the actions IAM
requires alongside a call (listed in IMPLIED, each with its reason).

The calls are what each function actually called in the end-to-end runs, not a list kept by
hand nor a reading of the code: the test bed records every request with its caller (the SDK's
`app/<function>` user-agent token, which the functions set) and its IAM action (the request's
signing service and action), one JSON line per new pair in the file `AMI_TESTBED_CALL_LOG`
names. `scripts/test` runs the end-to-end tests with that set, then this check over the file.
A call that no end-to-end test makes is therefore "allowed but never called": test it, or drop
the grant.

The template is read with a YAML loader that understands CloudFormation's tags (`!Sub`, `!If`,
...), never with regular expressions. Beyond the actions, it checks what SECURITY.md promises:
destructive actions only with `ec2:Owner` and never on "*", tagging only with
`ec2:CreateAction`, no wildcard action, KMS and EventBridge on named resources, the copy role's
deregistration only on the copies it tagged, the reference check's reads only through EC2.
`scripts/test_check_iam.py` proves that it fails on each kind of mistake.

Usage: check_iam.py [--calls FILE]   (default: $AMI_TESTBED_CALL_LOG); exits non-zero with the
difference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

import authorize  # noqa: E402  (the Service Authorization Reference, through the IAM evaluator)
import cfn  # noqa: E402  (template.yaml as CloudFormation reads it)

# Function resource in template.yaml -> the name it calls AWS as (its `app/` user-agent token and
# its test bed credentials): one list, the test bed's.
FUNCTIONS = authorize.FUNCTIONS

# Actions IAM requires together with a call the code makes.
# Actions of a path only a failure takes (EventBridge refusing an event), which the end-to-end
# tests take for one function: every function announces through the same code
# (jobs/announce.rs), so the others are granted them without a recorded call.
ON_FAILURE_ONLY = {
    "sqs:SendMessage": "parks an event EventBridge did not take (tested for ami-share)",
    "sqs:DeleteMessage": "removes a parked event once sent again (tested for ami-share)",
}

IMPLIED = {
    "sts:TagSession": "AssumeRole with session tags (the target role's sessions name the function)",
    "ec2:CreateTags": "CreateImage/RegisterImage/CopyImage with TagSpecifications need it (limited by ec2:CreateAction)",
    "kms:CreateGrant": "CopyImage with Encrypted/KmsKeyId: EC2 uses the key on the caller's behalf",
    "kms:Decrypt": "CopyImage with Encrypted/KmsKeyId",
    "kms:Encrypt": "CopyImage with Encrypted/KmsKeyId",
    "kms:GenerateDataKeyWithoutPlaintext": "CopyImage with Encrypted/KmsKeyId",
    "kms:ReEncryptFrom": "CopyImage with Encrypted/KmsKeyId",
    "kms:ReEncryptTo": "CopyImage with Encrypted/KmsKeyId",
    "kms:DescribeKey": "CopyImage with KmsKeyId",
    "ec2:DeleteSnapshot": "DeregisterImage with DeleteAssociatedSnapshots deletes the image's snapshots as the caller",
    "iam:PassRole": "RunInstances with IamInstanceProfile (validate.instance_profile) passes the profile's role to EC2",
}

# Actions a call needs to do its whole job: a role that makes the call must allow every one of
# them, or the call answers less than it should. DescribeImageReferences reads each resource
# type with the caller's permissions (EC2 User Guide, "Identify your resources referencing
# specified AMIs"; AWS managed policy AmazonEC2ImageReferencesAccessPolicy): without them it
# silently reports no references of that type, and an AMI that only an SSM parameter names
# would look unused.
REQUIRED_WITH = {
    "ec2:DescribeImageReferences": {
        "ec2:DescribeInstances": "ec2:Instance references",
        "ec2:DescribeLaunchTemplates": "ec2:LaunchTemplate references",
        "ec2:DescribeLaunchTemplateVersions": "ec2:LaunchTemplate references",
        "ssm:DescribeParameters": "ssm:Parameter references",
        "ssm:GetParameters": "ssm:Parameter references",
        "imagebuilder:ListImageRecipes": "imagebuilder:ImageRecipe references",
        "imagebuilder:ListContainerRecipes": "imagebuilder:ContainerRecipe references",
        "imagebuilder:GetContainerRecipe": "imagebuilder:ContainerRecipe references",
    },
}

# Template parameters a function's role must use as KMS resources: the keys CopyImage encrypts
# the copies with, and the keys of the sources it decrypts (CopyImage needs Decrypt,
# DescribeKey and CreateGrant on them, through EC2).
KEY_PARAMETERS = {
    "ShareFunction": {
        "ShareKmsKeyArns": {"kms:CreateGrant", "kms:ListGrants", "kms:RetireGrant"},
    },
    "PublishFunction": {
        "ValidationKmsKeyArns": {
            "kms:CreateGrant",
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:GenerateDataKeyWithoutPlaintext",
        },
    },
    "CopyFunction": {
        "CopyKmsKeyArns": {"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext"},
        "CopySourceKmsKeyArns": {"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"},
    },
}


def recorded_calls(lines: list[str]) -> dict[str, set[str]]:
    """Function resource -> the IAM actions it called, from the test bed's call log."""
    by_caller: dict[str, set[str]] = {}
    for line in lines:
        if line.strip():
            entry = json.loads(line)
            by_caller.setdefault(entry["caller"], set()).add(entry["action"])
    return {function: by_caller.get(caller, set()) for function, caller in FUNCTIONS.items()}


CfnLoader = cfn.CfnLoader
load_template = cfn.load_template


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(policies: list[Any]) -> list[dict[str, Any]]:
    """Every statement of a function's inline policies; both branches of an `Fn::If`."""
    out: list[dict[str, Any]] = []

    def walk(item: Any) -> None:
        if isinstance(item, dict) and "Fn::If" in item:
            for branch in item["Fn::If"][1:]:
                walk(branch)
        elif isinstance(item, dict) and "Effect" in item:
            out.append(item)

    for policy in policies:
        if isinstance(policy, dict) and "Statement" in policy:
            for statement in _listed(policy["Statement"]):
                walk(statement)
    return out


def template_roles(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    resources = template.get("Resources", {})
    return {
        name: statements(resources[name].get("Properties", {}).get("Policies", []))
        for name in FUNCTIONS
        if name in resources
    }


def template_actions(template: dict[str, Any]) -> dict[str, set[str]]:
    return {
        name: {a for st in sts if st.get("Effect") == "Allow" for a in _listed(st.get("Action", []))}
        for name, sts in template_roles(template).items()
    }


def key_statements(template: dict[str, Any]) -> dict[str, dict[str, set[str]]]:
    """Function -> key parameter -> the KMS actions of the statements whose resource it is."""
    out: dict[str, dict[str, set[str]]] = {}
    for function, sts in template_roles(template).items():
        for st in sts:
            for parameter in re.findall(r"'Ref': '(\w+KmsKeyArns)'", repr(st.get("Resource"))):
                out.setdefault(function, {}).setdefault(parameter, set()).update(
                    a for a in _listed(st.get("Action", [])) if a.startswith("kms:")
                )
    return out


def _condition_keys(statement: dict[str, Any]) -> set[str]:
    return {key for block in (statement.get("Condition") or {}).values() for key in block}


def _resources(statement: dict[str, Any]) -> list[Any]:
    return _listed(statement.get("Resource", []))


# What SECURITY.md promises of the roles, beyond which actions they allow.
OWNED = {
    "ec2:DeregisterImage",
    "ec2:DisableImage",
    "ec2:EnableImageDeprecation",
    "ec2:DeleteSnapshot",
    "ec2:ModifyImageAttribute",
    "ec2:ModifySnapshotAttribute",
    "ec2:EnableImageDeregistrationProtection",
    "ec2:DisableImageDeregistrationProtection",
    "ec2:RestoreImageFromRecycleBin",
    "ec2:RestoreSnapshotFromRecycleBin",
    "ec2:EnableImage",
    "ec2:DisableImageDeprecation",
}
REQUIRED_CONDITIONS = {
    **{a: {"ec2:Owner"} for a in OWNED},
    "ec2:CreateTags": {"ec2:CreateAction"},
    "ssm:DescribeParameters": {"aws:CalledVia"},
    "ssm:GetParameters": {"aws:CalledVia"},
    "imagebuilder:ListImageRecipes": {"aws:CalledVia"},
    "imagebuilder:ListContainerRecipes": {"aws:CalledVia"},
    "imagebuilder:GetContainerRecipe": {"aws:CalledVia"},
}
# A function's own conditions, in place of the ones above: the copy function deregisters only
# the copies it made; age-out tags only its own images, and only with its protection tag.
FUNCTION_CONDITIONS = {
    "CopyFunction": {
        a: {"ec2:Owner", "aws:ResourceTag/ami-automation:created-by"}
        for a in ("ec2:DeregisterImage", "ec2:DeleteSnapshot")
    },
    # DeleteTags has no ec2:Owner (Service Authorization Reference): it removes a mark only
    # from an image that carries one of the tool's marks (its protection, a recall's).
    "AgeOutFunction": {
        "ec2:CreateTags": {"ec2:Owner", "aws:TagKeys"},
        "ec2:DeleteTags": {"ec2:ResourceTag/ami-automation:*", "aws:TagKeys"},
    },
    # The publish function tags test instances at launch and its verdicts and pins on its own
    # AMIs (named tag keys either way), and terminates only the test instances it launched.
    "PublishFunction": {
        "ec2:CreateTags": {"aws:TagKeys"},
        "ec2:TerminateInstances": {
            "aws:ResourceTag/ami-automation:created-by",
            "aws:ResourceTag/ami-automation:validates",
        },
        "ec2:GetConsoleOutput": {"aws:ResourceTag/ami-automation:created-by"},
        "ec2:CreateLaunchTemplateVersion": {"aws:ResourceTag/ami-automation:publish"},
        "ec2:ModifyLaunchTemplate": {"aws:ResourceTag/ami-automation:publish"},
        "iam:PassRole": {"iam:PassedToService"},
    },
    # The share function grants only the launch operations, only to account roots, and tags only
    # its own AMIs, with one key (when it gave one to a new target).
    "ShareFunction": {
        "kms:CreateGrant": {"kms:GrantOperations", "kms:GranteePrincipal"},
        "ec2:CreateTags": {"ec2:Owner", "aws:TagKeys"},
    },
}
# Actions that must name their resources (never "*").
NARROW_PREFIXES = (
    "kms:",
    "events:",
    "ssm:PutParameter",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
    "ec2:CreateLaunchTemplateVersion",
    "ec2:ModifyLaunchTemplate",
    "iam:PassRole",
)


def statement_problems(function: str, sts: list[dict[str, Any]]) -> list[str]:
    problems = []
    for st in sts:
        sid = st.get("Sid", "?")
        keys = _condition_keys(st)
        for action in _listed(st.get("Action", [])):
            if "*" in action:
                problems.append(f"{sid}: wildcard action {action}")
            wanted = FUNCTION_CONDITIONS.get(function, {}).get(action, REQUIRED_CONDITIONS.get(action, set()))
            # A wanted key ending in `*` is met by any condition key it begins.
            missing = {
                w for w in wanted if w not in keys and not (w.endswith("*") and any(k.startswith(w[:-1]) for k in keys))
            }
            if missing:
                problems.append(f"{sid}: {action} without the condition {', '.join(sorted(missing))}")
            narrow = (
                action in OWNED or action in ("ec2:CreateTags", "ec2:DeleteTags") or action.startswith(NARROW_PREFIXES)
            )
            if narrow and "*" in _resources(st):
                problems.append(f'{sid}: {action} on every resource ("*")')
    return problems


def _matches_type(resource: str, arn_format: str) -> bool:
    """Whether a statement's resource (wildcards as "x") can name a resource of this ARN format."""
    if resource == "*":
        return True
    pattern = re.escape(arn_format)
    pattern = re.sub(r"\\\$\\\{[^}]*\\\}", ".*", pattern)
    return re.fullmatch(pattern, resource.replace("*", "x")) is not None


def condition_key_problems(sts: list[dict[str, Any]], template: dict[str, Any]) -> list[str]:
    """A condition on a key AWS never sets for the action and the resources the statement names
    matches nothing (Service Authorization Reference): an Allow that never allows, or a Deny
    that never denies. The keys AWS sets per action and resource type come from iam-data."""
    problems = []
    deployment = cfn.Deployment(template)
    for st in sts:
        st = deployment.resolve(st)
        sid = st.get("Sid", "?")
        resources = [str(r) for r in _listed(st.get("Resource", "*"))]
        for action in _listed(st.get("Action", [])):
            if "*" in action:
                continue
            details = authorize.SIDECAR_PROCESS.action(action)
            types = [
                rt for rt in details.get("resourceTypes", []) if any(_matches_type(r, rt["arn"]) for r in resources)
            ]
            for key in sorted(_condition_keys(st)):
                usable = any(
                    authorize.key_allowed(key, authorize.allowed_keys(action, rt["name"])) for rt in types
                ) or authorize.key_allowed(key, authorize.allowed_keys(action, None))
                if not usable:
                    names = ", ".join(rt["name"] for rt in types) or "no resource type"
                    problems.append(
                        f"{sid}: {action} conditions on {key}, which AWS never sets for it ({names}): "
                        "the statement matches nothing"
                    )
    return problems


def trigger_problems(template: dict[str, Any]) -> list[str]:
    """What SECURITY.md promises of who can start the functions (its threat model): every rule
    matches the stack's own account; ami-publish has no rule on instance state changes (every
    instance of the account would take its only slot); the continuation rule delivers the sealed
    event whole; the tool's bus denies PutEvents to every principal but the functions' roles."""
    problems = []
    resources = template.get("Resources", {})
    for function in FUNCTIONS:
        events = resources.get(function, {}).get("Properties", {}).get("Events", {}) or {}
        for name, event in events.items():
            if event.get("Type") != "EventBridgeRule":
                continue
            props = event.get("Properties", {})
            pattern = props.get("Pattern", {})
            if pattern.get("account") != [{"Ref": "AWS::AccountId"}]:
                problems.append(f"{function}: rule {name} does not match only the stack's account")
            if function == "PublishFunction" and "EC2 Instance State-change Notification" in pattern.get(
                "detail-type", []
            ):
                problems.append(
                    f"{function}: rule {name} on instance state changes takes its only slot for every instance"
                )
            if "Policy Run Continued" in pattern.get("detail-type", []) and ("InputPath" in props or "Input" in props):
                problems.append(f"{function}: rule {name} must deliver the sealed continuation whole (no InputPath)")
    policy = resources.get("ToolBusPolicy", {}).get("Properties", {}).get("Statement", {})
    principals = policy.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn", [])
    roles = sorted(p.get("Fn::GetAtt", ["?"])[0] if isinstance(p, dict) else str(p) for p in _listed(principals))
    wanted = sorted(f"{f}Role" for f in FUNCTIONS)
    denies = (policy.get("Effect"), policy.get("Principal"), policy.get("Action")) == ("Deny", "*", "events:PutEvents")
    if not denies or roles != wanted:
        problems.append(
            f"ToolBusPolicy: must deny events:PutEvents to every principal but {', '.join(wanted)} (has {roles})"
        )
    return problems


def check(template_text: str, called: dict[str, set[str]]) -> list[str]:
    """Every difference between the template's roles and what the functions called (`called`:
    function resource -> IAM actions) and SECURITY.md promises, each prefixed with its function;
    empty when the roles are right."""
    template = load_template(template_text)
    allowed = template_actions(template)
    roles = template_roles(template)
    keys = key_statements(template)
    problems = []
    for function in FUNCTIONS:
        used = called.get(function, set())
        if not used:
            problems.append(f"{function}: no call recorded: run the end-to-end tests with AMI_TESTBED_CALL_LOG set")
            continue
        granted = allowed.get(function)
        if granted is None:
            problems.append(f"{function}: not in template.yaml")
            continue
        required = set(used)
        for trigger, needs in REQUIRED_WITH.items():
            if trigger in used:
                required |= set(needs)
        problems += [f"{function}: called but not allowed: {a}" for a in sorted(required - granted)]
        problems += [
            f"{function}: allowed but never called: {a}"
            for a in sorted(granted - required)
            if a not in IMPLIED and a not in ON_FAILURE_ONLY
        ]
        for parameter, actions in KEY_PARAMETERS.get(function, {}).items():
            lacking = sorted(actions - keys.get(function, {}).get(parameter, set()))
            if lacking:
                problems.append(f"{function}: the statement on {parameter} lacks: {', '.join(lacking)}")
        problems += [f"{function}: {p}" for p in statement_problems(function, roles.get(function, []))]
        problems += [f"{function}: {p}" for p in condition_key_problems(roles.get(function, []), template)]
    return problems + trigger_problems(template)


# Statements no end-to-end test can use, each with the reason (the rest must allow something a
# test did: least privilege from the same data AWS decides on).
UNUSED_ALLOWED: dict[str, str] = {}


# The role target-role.yaml deploys in each target account: its sessions' decisions (callers
# `@<account>/<session>` in the IAM log) show which of its statements the tests used.
TARGET_ROLE = "TargetRole (target-role.yaml)"


def target_role_statements() -> list[dict[str, Any]]:
    template = load_template((ROOT / "target-role.yaml").read_text())
    policies = template["Resources"]["TargetRole"]["Properties"].get("Policies", [])
    return [st for p in policies for st in _listed(p["PolicyDocument"]["Statement"])]


def iam_problems(lines: list[str], template: dict[str, Any]) -> list[str]:
    """What the test bed's IAM evaluation of the end-to-end tests found (AMI_TESTBED_IAM_LOG):
    a request denied, a call it could not evaluate, and a statement of a role that allowed
    nothing any test did."""
    entries = [json.loads(line) for line in lines if line.strip()]
    by_binary = {binary: function for function, binary in FUNCTIONS.items()}
    problems = []
    used: dict[str, set[str]] = {}
    for e in entries:
        function = TARGET_ROLE if e["caller"].startswith("@") else by_binary.get(e["caller"], e["caller"])
        if e["result"] == "Allowed":
            used.setdefault(function, set()).update(e.get("allowed_by", []))
        elif e["result"] == "Missing":
            continue
        elif e["result"] in ("Unevaluated", "EvaluatorFailed"):
            problems.append(
                f"{function}: {e['call']} was not evaluated by the test bed's IAM "
                f"({e.get('error', 'no builder in tests/support/iam_requests.py')})"
            )
        elif not e.get("expected"):
            problems.append(
                f"{function}: denied in the tests: {e['action']} on {e.get('resource_type') or '*'} (for {e['call']})"
            )
    decided = {TARGET_ROLE if e["caller"].startswith("@") else by_binary.get(e["caller"], e["caller"]) for e in entries}
    for function, sts in {**template_roles(template), TARGET_ROLE: target_role_statements()}.items():
        if function not in decided:
            problems.append(
                f"{function}: no IAM decision recorded: the test bed evaluated none of its calls (AMI_TESTBED_IAM=off?)"
            )
            continue
        if function not in used:
            continue
        for st in sts:
            sid = st.get("Sid")
            if (
                st.get("Effect") == "Allow"
                and sid
                and sid not in used[function]
                and sid not in UNUSED_ALLOWED
                and not (set(_listed(st.get("Action", []))) & set(ON_FAILURE_ONLY))
            ):
                problems.append(
                    f"{function}: statement {sid} allowed nothing the end-to-end tests did: "
                    "test what needs it, or drop it"
                )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--calls",
        default=os.environ.get("AMI_TESTBED_CALL_LOG"),
        help="the test bed's call log (default: $AMI_TESTBED_CALL_LOG)",
    )
    args = parser.parse_args()
    if not args.calls or not Path(args.calls).is_file():
        print(
            "check_iam: no call log: run `scripts/test` (it records the calls and runs this check), "
            "or pass --calls with the file AMI_TESTBED_CALL_LOG named during the end-to-end tests",
            file=sys.stderr,
        )
        return 2
    called = recorded_calls(Path(args.calls).read_text().splitlines())
    problems = check((ROOT / "template.yaml").read_text(), called)
    iam_log = os.environ.get("AMI_TESTBED_IAM_LOG")
    if iam_log and Path(iam_log).is_file():
        problems += iam_problems(
            Path(iam_log).read_text().splitlines(), load_template((ROOT / "template.yaml").read_text())
        )
    for function in FUNCTIONS:
        mine = [p for p in problems if p.startswith(f"{function}:")]
        status = "ok" if not mine else "MISMATCH"
        print(f"{function}: {status}: called {len(called[function])} actions in the end-to-end tests")
        for p in mine:
            print(f"  {p[len(function) + 2 :]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
