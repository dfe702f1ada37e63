"""Checks that each function's IAM role in template.yaml allows exactly the AWS calls its code
makes: every call the code makes is allowed, and nothing else is, except the actions IAM
requires alongside a call (listed in IMPLIED, each with its reason).

The template is read with a YAML loader that understands CloudFormation's tags (`!Sub`, `!If`,
...), never with regular expressions. Beyond the actions, it checks what SECURITY.md promises:
destructive actions only with `ec2:Owner` and never on "*", tagging only with
`ec2:CreateAction`, no wildcard action, KMS and EventBridge on named resources, the copy role's
deregistration only on the copies it tagged, the reference check's reads only through EC2.
`scripts/test_check_iam.py` proves that it fails on each kind of mistake.

The calls are derived from the code, not listed by hand: the SDK operations each adapter method
of shared/src/adapters/ (EC2, KMS, EventBridge) sends, followed through the adapter methods each
function's module calls. Run by .ci/run; exits non-zero with the difference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml  # PyYAML: in the test bed's virtualenv (cfn-lint depends on it)

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "shared" / "src"

# Function resource in template.yaml -> the modules whose code it runs.
FUNCTIONS = {
    "AgeOutFunction": ["jobs/ageout/mod.rs", "jobs/ageout/execute.rs"],
    "BuildFunction": ["jobs/build/execute.rs", "lambda/report.rs"],
    "ShareFunction": ["jobs/share/execute.rs", "lambda/report.rs"],
    "CopyFunction": ["jobs/copy/execute.rs", "lambda/report.rs"],
}

# Adapters: file -> service prefix of the client they call.
ADAPTERS = {
    **{f"adapters/ec2/{name}.rs": "ec2"
       for name in ("mod", "scan", "create", "permissions", "copy", "retire")},
    "adapters/kms.rs": "kms",
    "adapters/eventbridge.rs": "events",
}

# Actions IAM requires together with a call the code makes.
IMPLIED = {
    "ec2:CreateTags": "CreateImage/RegisterImage/CopyImage with TagSpecifications need it (limited by ec2:CreateAction)",
    "kms:CreateGrant": "CopyImage with Encrypted/KmsKeyId: EC2 uses the key on the caller's behalf",
    "kms:Decrypt": "CopyImage with Encrypted/KmsKeyId",
    "kms:Encrypt": "CopyImage with Encrypted/KmsKeyId",
    "kms:GenerateDataKeyWithoutPlaintext": "CopyImage with Encrypted/KmsKeyId",
    "kms:ReEncryptFrom": "CopyImage with Encrypted/KmsKeyId",
    "kms:ReEncryptTo": "CopyImage with Encrypted/KmsKeyId",
    "kms:DescribeKey": "CopyImage with KmsKeyId",
    "ec2:DeleteSnapshot": "DeregisterImage with DeleteAssociatedSnapshots deletes the image's snapshots as the caller",
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
    "CopyFunction": {
        "CopyKmsKeyArns": {"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext"},
        "CopySourceKmsKeyArns": {"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"},
    },
}

FN = re.compile(r"^\s*(?:pub\s+)?(?:async\s+)?fn\s+(\w+)", re.M)
# An SDK operation: the client, then `.operation()` (possibly on the next line).
SDK_OP = re.compile(r"\bclient\s*\.\s*(\w+)\(\)")
CALL = re.compile(r"\.(\w+)\(")


def without_tests(text: str) -> str:
    return re.split(r"#\[cfg\(test\)\]\s*mod tests \{", text)[0]


def pascal(op: str) -> str:
    return "".join(part.capitalize() for part in op.split("_"))


def functions_of(path: Path) -> dict[str, str]:
    text = path.read_text()
    starts = [(m.start(), m.group(1)) for m in FN.finditer(text)]
    bodies = {}
    for i, (start, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        bodies.setdefault(name, "")
        bodies[name] += text[start:end]
    return bodies


def adapter_actions() -> dict[str, set[str]]:
    """Adapter method -> IAM actions it (transitively) sends."""
    direct: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for file, service in ADAPTERS.items():
        for name, body in functions_of(SRC / file).items():
            body = without_tests(body)
            direct.setdefault(name, set()).update(f"{service}:{pascal(op)}" for op in SDK_OP.findall(body))
            calls.setdefault(name, set()).update(CALL.findall(body))
    resolved: dict[str, set[str]] = {}

    def resolve(name: str, seen: frozenset[str]) -> set[str]:
        if name in resolved:
            return resolved[name]
        out = set(direct.get(name, set()))
        for callee in calls.get(name, set()):
            if callee in direct and callee not in seen and callee != name:
                out |= resolve(callee, seen | {name})
        resolved[name] = out
        return out

    for name in direct:
        resolve(name, frozenset())
    return {k: v for k, v in resolved.items() if v}


def code_actions(modules: list[str], adapters: dict[str, set[str]]) -> set[str]:
    out: set[str] = set()
    for module in modules:
        text = without_tests((SRC / module).read_text())
        for callee in set(CALL.findall(text)):
            out |= adapters.get(callee, set())
    return out


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (`!Sub`, `!If`, `!Ref`, ...), each read as
    its long form (`{"Fn::Sub": ...}`, `{"Ref": ...}`)."""


def _cfn_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(text: str) -> dict[str, Any]:
    return yaml.load(text, Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass


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
                    a for a in _listed(st.get("Action", [])) if a.startswith("kms:"))
    return out


def _condition_keys(statement: dict[str, Any]) -> set[str]:
    return {key for block in (statement.get("Condition") or {}).values() for key in block}


def _resources(statement: dict[str, Any]) -> list[Any]:
    return _listed(statement.get("Resource", []))


# What SECURITY.md promises of the roles, beyond which actions they allow.
OWNED = {"ec2:DeregisterImage", "ec2:DisableImage", "ec2:EnableImageDeprecation", "ec2:DeleteSnapshot",
         "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute"}
REQUIRED_CONDITIONS = {
    **{a: {"ec2:Owner"} for a in OWNED},
    "ec2:CreateTags": {"ec2:CreateAction"},
    "ssm:DescribeParameters": {"aws:CalledVia"},
    "ssm:GetParameters": {"aws:CalledVia"},
    "imagebuilder:ListImageRecipes": {"aws:CalledVia"},
    "imagebuilder:ListContainerRecipes": {"aws:CalledVia"},
    "imagebuilder:GetContainerRecipe": {"aws:CalledVia"},
}
# A function's own conditions: the copy function deregisters only the copies it made.
FUNCTION_CONDITIONS = {
    "CopyFunction": {a: {"aws:ResourceTag/ami-automation:created-by"}
                     for a in ("ec2:DeregisterImage", "ec2:DeleteSnapshot")},
}
# Actions that must name their resources (never "*").
NARROW_PREFIXES = ("kms:", "events:")


def statement_problems(function: str, sts: list[dict[str, Any]]) -> list[str]:
    problems = []
    for st in sts:
        sid = st.get("Sid", "?")
        keys = _condition_keys(st)
        for action in _listed(st.get("Action", [])):
            if "*" in action:
                problems.append(f"{sid}: wildcard action {action}")
            wanted = REQUIRED_CONDITIONS.get(action, set()) | FUNCTION_CONDITIONS.get(function, {}).get(action, set())
            missing = wanted - keys
            if missing:
                problems.append(f"{sid}: {action} without the condition {', '.join(sorted(missing))}")
            narrow = action in OWNED or action == "ec2:CreateTags" or action.startswith(NARROW_PREFIXES)
            if narrow and "*" in _resources(st):
                problems.append(f'{sid}: {action} on every resource ("*")')
    return problems


def check(template_text: str) -> list[str]:
    """Every difference between the template's roles and what the code needs and SECURITY.md
    promises, each prefixed with its function; empty when the roles are right."""
    template = load_template(template_text)
    adapters = adapter_actions()
    allowed = template_actions(template)
    roles = template_roles(template)
    keys = key_statements(template)
    problems = []
    for function, modules in FUNCTIONS.items():
        used = code_actions(modules, adapters)
        granted = allowed.get(function)
        if granted is None:
            problems.append(f"{function}: not in template.yaml")
            continue
        required = set(used)
        for trigger, needs in REQUIRED_WITH.items():
            if trigger in used:
                required |= set(needs)
        problems += [f"{function}: called but not allowed: {a}" for a in sorted(required - granted)]
        problems += [f"{function}: allowed but never called: {a}"
                     for a in sorted(granted - required) if a not in IMPLIED]
        for parameter, actions in KEY_PARAMETERS.get(function, {}).items():
            lacking = sorted(actions - keys.get(function, {}).get(parameter, set()))
            if lacking:
                problems.append(f"{function}: the statement on {parameter} lacks: {', '.join(lacking)}")
        problems += [f"{function}: {p}" for p in statement_problems(function, roles.get(function, []))]
    return problems


def main() -> int:
    problems = check((ROOT / "template.yaml").read_text())
    adapters = adapter_actions()
    for function, modules in FUNCTIONS.items():
        mine = [p for p in problems if p.startswith(f"{function}:")]
        status = "ok" if not mine else "MISMATCH"
        print(f"{function}: {status}: code calls {len(code_actions(modules, adapters))} actions")
        for p in mine:
            print(f"  {p[len(function) + 2:]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
