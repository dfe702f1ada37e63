"""template.yaml as CloudFormation reads it: a YAML loader that understands its short tags
(`!Sub`, `!If`, ...), and a resolver of intrinsic functions for one deployment (its parameters,
account, region and the physical ids of its resources). Used by the IAM check
(scripts/check_iam.py) and the test bed's IAM evaluation (tests/support/authorize.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml  # PyYAML: in the test bed's virtualenv (cfn-lint depends on it)

NO_VALUE = object()


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that turns `!Tag value` into CloudFormation's long form (`{"Fn::Tag": value}`,
    `{"Ref": value}`)."""


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


def functions(template: dict[str, Any]) -> dict[str, str]:
    """Each function resource of the template and its binary (`Metadata.BuildProperties.Binary`):
    the stack's functions, as the library's `Function` names them (a unit test checks both)."""
    return {
        name: resource["Metadata"]["BuildProperties"]["Binary"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# Physical ids and attributes of the resource types the roles name, as CloudFormation gives them.
def _attributes(kind: str, name: str, account: str, region: str) -> dict[str, str]:
    arn = f"arn:aws:{{}}:{region}:{account}:{{}}"
    if kind == "AWS::KMS::Key":
        return {"Ref": name, "Arn": arn.format("kms", f"key/{name}"), "KeyId": name}
    if kind == "AWS::SQS::Queue":
        return {
            "Ref": f"https://sqs.{region}.amazonaws.com/{account}/{name}",
            "QueueName": name,
            "Arn": arn.format("sqs", name),
        }
    if kind == "AWS::Events::EventBus":
        return {"Ref": name, "Name": name, "Arn": arn.format("events", f"event-bus/{name}")}
    if kind == "AWS::IAM::Role":
        return {"Ref": name, "Arn": f"arn:aws:iam::{account}:role/{name}"}
    if kind == "AWS::Scheduler::ScheduleGroup":
        return {"Ref": name, "Arn": arn.format("scheduler", f"schedule-group/{name}")}
    if kind == "AWS::Serverless::Function":
        return {"Ref": name, "Arn": arn.format("lambda", f"function:{name}")}
    return {"Ref": name, "Arn": arn.format("cloudformation", name)}


@dataclass
class Deployment:
    """One deployment of the template: its parameters (the template's defaults unless given) and
    the physical ids of its resources (`{logical id: {"Ref": ..., "Arn": ...}}`, made up from the
    logical id unless given)."""

    template: dict[str, Any]
    account: str = "123456789012"
    region: str = "us-east-1"
    parameters: dict[str, Any] = field(default_factory=dict)
    physical: dict[str, dict[str, str]] = field(default_factory=dict)

    def parameter(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        spec = self.template.get("Parameters", {}).get(name)
        if spec is None:
            raise KeyError(f"no parameter {name}")
        default = spec.get("Default", "")
        if spec.get("Type") == "CommaDelimitedList":
            return [v for v in str(default).split(",") if v] if isinstance(default, str) else default
        return str(default)

    def attribute(self, logical: str, attribute: str) -> str:
        given = self.physical.get(logical, {})
        if attribute in given:
            return given[attribute]
        resource = self.template.get("Resources", {}).get(logical)
        if resource is None and logical.endswith("Role") and logical[:-4] in self.template.get("Resources", {}):
            # The role SAM makes for a function with `Policies` (`<Function>Role`).
            resource = {"Type": "AWS::IAM::Role"}
        if resource is None:
            raise KeyError(f"no resource {logical}")
        name = given.get("Ref", logical)
        return _attributes(resource.get("Type", ""), name, self.account, self.region)[attribute]

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function replaced by what CloudFormation makes of it;
        `Fn::If` branches to `AWS::NoValue` are dropped from lists and mappings."""
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            function = getattr(self, "_" + key.replace("::", "_").replace("Fn_", "fn_"), None)
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                if function is None:
                    raise ValueError(f"intrinsic {key} is not resolved by tests/support/cfn.py")
                return function(arg)
        out = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def _Ref(self, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "ami-lifecycle",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        return self.attribute(name, "Ref")

    def _fn_GetAtt(self, arg: list[str]) -> str:
        return self.attribute(arg[0], arg[1])

    def _fn_Sub(self, arg: Any) -> str:
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in names:
                return str(names[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return self.attribute(logical, attribute)
            value = self._Ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def _fn_If(self, arg: list[Any]) -> Any:
        return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])

    def _fn_Equals(self, arg: list[Any]) -> bool:
        left, right = (self.resolve(a) for a in arg)
        flat = [",".join(v) if isinstance(v, list) else str(v) for v in (left, right)]
        return flat[0] == flat[1]

    def _fn_Not(self, arg: list[Any]) -> bool:
        return not self.resolve(arg[0])

    def _fn_And(self, arg: list[Any]) -> bool:
        return all(self.resolve(a) for a in arg)

    def _fn_Or(self, arg: list[Any]) -> bool:
        return any(self.resolve(a) for a in arg)

    def _Condition(self, name: str) -> bool:
        return self.condition(name)

    def _fn_Join(self, arg: list[Any]) -> str:
        return str(arg[0]).join(str(v) for v in listed(self.resolve(arg[1])))

    def _fn_Split(self, arg: list[Any]) -> list[str]:
        return str(self.resolve(arg[1])).split(arg[0])

    def _fn_Select(self, arg: list[Any]) -> Any:
        return listed(self.resolve(arg[1]))[int(self.resolve(arg[0]))]
