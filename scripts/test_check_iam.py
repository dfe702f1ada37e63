"""The IAM checker checks itself: each kind of mistake a person could make to a role (an action
removed, an action added, a wildcard action, a resource widened to "*", a condition dropped) and
a call no role allows make it fail, naming the function and the action. (That the real template
matches the real calls is the check `scripts/test` runs over the end-to-end tests' call log.)

The calls the mutated templates are checked against are the ones the unmodified template allows
(less what IAM only implies): a template that matches them exactly, so each mutation alone makes
the difference.

Run by scripts/test: `python -m unittest scripts/test_check_iam.py` (the test bed's virtualenv,
which has PyYAML).
"""

from __future__ import annotations

import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_iam  # noqa: E402

TEMPLATE = (check_iam.ROOT / "template.yaml").read_text()


def calls_the_template_allows() -> dict[str, set[str]]:
    out = {}
    for function, granted in check_iam.template_actions(check_iam.load_template(TEMPLATE)).items():
        out[function] = {a for a in granted if a not in check_iam.IMPLIED}
    return out


CALLED = calls_the_template_allows()


def mutated(old: str, new: str) -> str:
    assert TEMPLATE.count(old) >= 1, f"the template no longer has {old!r}"
    return TEMPLATE.replace(old, new, 1)


class CheckIam(unittest.TestCase):
    def assertFinds(self, template: str, *expected: str) -> None:
        problems = check_iam.check(template, CALLED)
        for want in expected:
            self.assertTrue(any(want in p for p in problems), f"{want!r} not in {problems}")

    def test_the_calls_it_is_checked_against_match_the_template(self) -> None:
        self.assertEqual(check_iam.check(TEMPLATE, CALLED), [])

    def test_a_recorded_call_no_role_allows_fails(self) -> None:
        log = [json.dumps({"caller": "ami-share", "action": a}) for a in sorted(CALLED["ShareFunction"])]
        log.append(json.dumps({"caller": "ami-share", "action": "ec2:DeleteSnapshot"}))
        called = {**CALLED, **{k: v for k, v in check_iam.recorded_calls(log).items() if k == "ShareFunction"}}
        self.assertEqual(
            check_iam.check(TEMPLATE, called), ["ShareFunction: called but not allowed: ec2:DeleteSnapshot"]
        )

    def test_a_function_that_called_nothing_fails(self) -> None:
        problems = check_iam.check(TEMPLATE, {**CALLED, "CopyFunction": set()})
        self.assertTrue(any(p.startswith("CopyFunction: no call recorded") for p in problems), problems)

    def test_a_rule_that_takes_any_accounts_events_fails(self) -> None:
        self.assertFinds(
            mutated(
                "              account: [!Ref AWS::AccountId]\n              source: [aws.ec2]\n",
                "              source: [aws.ec2]\n",
            ),
            "does not match only the stack's account",
        )

    def test_a_continuation_rule_that_unwraps_the_request_fails(self) -> None:
        self.assertFinds(
            mutated(
                "                key: [!GetAtt SigningKey.Arn]\n",
                "                key: [!GetAtt SigningKey.Arn]\n            InputPath: $.detail.request\n",
            ),
            "must deliver the sealed continuation whole",
        )

    def test_a_bus_policy_that_lets_another_principal_put_events_fails(self) -> None:
        self.assertFinds(
            mutated(
                "              - !GetAtt PublishFunctionRole.Arn\n",
                "              - !GetAtt PublishFunctionRole.Arn\n              - arn:aws:iam::111122223333:role/anyone\n",
            ),
            "ToolBusPolicy: must deny",
        )
        self.assertFinds(mutated("              - !GetAtt BuildFunctionRole.Arn\n", ""), "ToolBusPolicy: must deny")

    def test_a_rule_on_every_instance_for_the_publish_function_fails(self) -> None:
        rule = (
            "        TestInstanceChanged:\n          Type: EventBridgeRule\n          Properties:\n            Pattern:\n"
            "              account: [!Ref AWS::AccountId]\n              source: [aws.ec2]\n"
            "              detail-type: [EC2 Instance State-change Notification]\n"
        )
        anchor = "        # No rule on instance state changes"
        self.assertFinds(mutated(anchor, rule + anchor), "takes its only slot for every instance")

    def test_a_removed_action_fails(self) -> None:
        self.assertFinds(
            mutated(
                "                - ec2:DeregisterImage\n"
                '              Resource: !Sub "arn:${AWS::Partition}:ec2:*::image/*"\n'
                "              Condition:\n"
                "                StringEquals:\n"
                "                  ec2:Owner: !Ref AWS::AccountId\n"
                "            - Sid: DeleteOwnSnapshots",
                '              Resource: !Sub "arn:${AWS::Partition}:ec2:*::image/*"\n'
                "              Condition:\n"
                "                StringEquals:\n"
                "                  ec2:Owner: !Ref AWS::AccountId\n"
                "            - Sid: DeleteOwnSnapshots",
            ),
            "AgeOutFunction: called but not allowed: ec2:DeregisterImage",
        )

    def test_a_reference_check_permission_missing_fails(self) -> None:
        self.assertFinds(
            mutated("                - ssm:GetParameters\n", ""),
            "AgeOutFunction: called but not allowed: ssm:GetParameters",
        )

    def test_an_extra_action_fails(self) -> None:
        self.assertFinds(
            mutated(
                "                - ec2:GetImageBlockPublicAccessState\n",
                "                - ec2:GetImageBlockPublicAccessState\n                - ec2:DescribeVolumes\n",
            ),
            "ShareFunction: allowed but never called: ec2:DescribeVolumes",
        )

    def test_a_wildcard_action_fails(self) -> None:
        self.assertFinds(
            mutated("                - ec2:ModifyImageAttribute\n", "                - ec2:Modify*\n"),
            "ShareFunction: ChangeOwnImagePermissions: wildcard action ec2:Modify*",
        )

    def test_a_widened_resource_fails(self) -> None:
        self.assertFinds(
            mutated(
                "                - ec2:DisableImage\n"
                "                - ec2:DeregisterImage\n"
                '              Resource: !Sub "arn:${AWS::Partition}:ec2:*::image/*"',
                '                - ec2:DisableImage\n                - ec2:DeregisterImage\n              Resource: "*"',
            ),
            'AgeOutFunction: RetireOwnImages: ec2:DeregisterImage on every resource ("*")',
        )

    def test_a_dropped_owner_condition_fails(self) -> None:
        self.assertFinds(
            mutated(
                "            - Sid: ChangeOwnSnapshotPermissions\n"
                "              Effect: Allow\n"
                "              Action:\n"
                "                - ec2:ModifySnapshotAttribute\n"
                '              Resource: !Sub "arn:${AWS::Partition}:ec2:*::snapshot/*"\n'
                "              Condition:\n"
                "                StringEquals:\n"
                "                  ec2:Owner: !Ref AWS::AccountId\n",
                "            - Sid: ChangeOwnSnapshotPermissions\n"
                "              Effect: Allow\n"
                "              Action:\n"
                "                - ec2:ModifySnapshotAttribute\n"
                '              Resource: !Sub "arn:${AWS::Partition}:ec2:*::snapshot/*"\n',
            ),
            "ShareFunction: ChangeOwnSnapshotPermissions: ec2:ModifySnapshotAttribute without the condition ec2:Owner",
        )

    def test_tagging_beyond_creation_and_the_copy_roles_tag_condition_fail(self) -> None:
        self.assertFinds(
            mutated(
                "                  ec2:CreateAction: [CreateImage, RegisterImage]\n",
                "                  ec2:Region: [us-east-1]\n",
            ),
            "BuildFunction: TagOnCreateOnly: ec2:CreateTags without the condition ec2:CreateAction",
        )
        self.assertFinds(
            mutated("                  aws:ResourceTag/ami-automation:created-by: ami-copy\n", ""),
            "CopyFunction: DeregisterFailedCopies: ec2:DeregisterImage without the condition "
            "aws:ResourceTag/ami-automation:created-by",
        )

    def test_a_key_statement_lacking_an_action_fails(self) -> None:
        text = TEMPLATE
        start = text.index("DecryptSourcesWithTheConfiguredKeysOnly")
        cut = text.index("                  - kms:Decrypt\n", start)
        self.assertFinds(
            text[:cut] + text[cut + len("                  - kms:Decrypt\n") :],
            "CopyFunction: the statement on CopySourceKmsKeyArns lacks: kms:Decrypt",
        )

    def test_a_condition_on_a_key_aws_never_sets_for_the_action_fails(self) -> None:
        # DeleteTags is authorized without ec2:Owner (Service Authorization Reference): the
        # statement would match nothing, and every unprotect would be denied.
        self.assertFinds(
            mutated(
                "                  ec2:ResourceTag/ami-automation:protected-by: ami-age-out\n",
                "                  ec2:Owner: !Ref AWS::AccountId\n",
            ),
            "AgeOutFunction: UnmarkImagesItProtected: ec2:DeleteTags conditions on ec2:Owner, "
            "which AWS never sets for it",
        )


if __name__ == "__main__":
    unittest.main()
