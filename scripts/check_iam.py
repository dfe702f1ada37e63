"""Checks that each function's IAM role in template.yaml allows exactly the AWS calls its code
makes: every call the code makes is allowed, and nothing else is, except the actions IAM
requires alongside a call (listed in IMPLIED, each with its reason).

The calls are derived from the code, not listed by hand: the SDK operations each adapter method
of shared/src/ec2.rs (and app.rs, publish.rs) sends, followed through the adapter methods each
function's module calls. Run by .ci/run; exits non-zero with the difference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "shared" / "src"

# Function resource in template.yaml -> the modules whose code it runs.
FUNCTIONS = {
    "AgeOutFunction": ["ageout/mod.rs", "ageout/execute.rs"],
    "BuildFunction": ["build.rs", "respond.rs"],
    "ShareFunction": ["share.rs", "respond.rs"],
    "CopyFunction": ["copy.rs", "respond.rs"],
}

# Adapters: file -> service prefix of the client they call.
ADAPTERS = {"ec2.rs": "ec2", "app.rs": "kms", "publish.rs": "events"}

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


def template_actions() -> dict[str, set[str]]:
    text = (ROOT / "template.yaml").read_text()
    resources = re.split(r"\n  (?=\w+:\n    Type:)", text)
    out = {}
    for block in resources:
        name = block.split(":", 1)[0].strip()
        if name in FUNCTIONS:
            out[name] = set(re.findall(r"-\s+((?:ec2|events|kms|ssm|imagebuilder):\w+)", block))
    return out


def key_statements() -> dict[str, dict[str, set[str]]]:
    """Function -> key parameter -> the KMS actions of the statement whose resource it is."""
    text = (ROOT / "template.yaml").read_text()
    out: dict[str, dict[str, set[str]]] = {}
    for block in re.split(r"\n  (?=\w+:\n    Type:)", text):
        name = block.split(":", 1)[0].strip()
        for statement in re.split(r"\n\s+- (?:!If|Sid:)", block):
            for parameter in re.findall(r"!Ref (\w+KmsKeyArns)", statement):
                out.setdefault(name, {}).setdefault(parameter, set()).update(re.findall(r"-\s+(kms:\w+)", statement))
    return out


def main() -> int:
    adapters = adapter_actions()
    allowed = template_actions()
    failed = False
    for function, modules in FUNCTIONS.items():
        used = code_actions(modules, adapters)
        granted = allowed.get(function)
        if granted is None:
            print(f"{function}: not in template.yaml")
            failed = True
            continue
        required = set(used)
        for trigger, needs in REQUIRED_WITH.items():
            if trigger in used:
                required |= set(needs)
        missing = sorted(required - granted)
        extra = sorted(a for a in granted - required if a not in IMPLIED)
        keys = key_statements().get(function, {})
        lacking = {p: sorted(a - keys.get(p, set())) for p, a in KEY_PARAMETERS.get(function, {}).items()}
        lacking = {p: a for p, a in lacking.items() if a}
        status = "ok" if not missing and not extra and not lacking else "MISMATCH"
        print(f"{function}: {status}: code calls {len(used)} actions, role allows {len(granted)}")
        for parameter, actions in lacking.items():
            print(f"  the statement on {parameter} lacks: {', '.join(actions)}")
        failed |= bool(lacking)
        for a in missing:
            print(f"  called but not allowed: {a}")
        for a in extra:
            print(f"  allowed but never called: {a}")
        failed |= bool(missing or extra)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
