"""Several accounts: the target accounts a distributing stack reaches through the role of
target-role.yaml, and the queue its sweeps fan out on.

- **The target role.** `POST /_testbed/accounts` deploys target-role.yaml in each account it
  lists (as the StackSet does), its parameters resolved for the stack under test: the trusted
  principal is ami-distribute's role, the ExternalId the one the functions' environment gives.
  An account listed under `without_role` has none (a target the StackSet has not reached).
- **AssumeRole** (STS API reference) is authorized as AWS authorizes a cross-account request:
  the caller's identity policy (template.yaml) and the role's trust policy must both allow it,
  with `sts:ExternalId`, the session tags (`sts:TagSession`, `aws:RequestTag/*`, `aws:TagKeys`);
  an account without the role answers AccessDenied. moto answers any AssumeRole, role or not,
  with credentials of the role's account (moto keys each backend by account).
- **The session's requests** are evaluated against the target role's permission policies
  (authorize.py), in the target account's backends.
- **The organization** (`POST /_testbed/organization`) is held by the stack's account, or by
  another (`management`: as when the stack names `OrganizationsRoleArn`); there a reader role
  trusts ami-distribute's role (AssumeRole authorized against that trust). Its session's
  Organizations requests are not evaluated: its permissions are the customer's, in neither
  template.
- **The distribution queue** (template.yaml, DistributeQueue): redrive to its dead-letter queue
  after 3 receives (SQS Developer Guide, "Using dead-letter queues").
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import cfn

ROOT = Path(__file__).resolve().parent.parent.parent.parent
DESCRIPTION: dict[str, Any] = json.loads((Path(__file__).resolve().parent / "description.json").read_text())
TEMPLATE = cfn.load_template((ROOT / "target-role.yaml").read_text())

#: Target account -> its deployed role: {"arn", "trust", "policies"}.
TARGETS: dict[str, dict[str, Any]] = {}
#: The account that holds the organization (the stack's, unless a test names another).
MANAGEMENT: list[str] = [DESCRIPTION["account"]]
#: The organizations reader role's ARN -> its trust policy (in the management account).
READERS: dict[str, dict[str, Any]] = {}
LOCK = threading.Lock()


def role_name() -> str:
    return str(cfn.Deployment(TEMPLATE).parameter("RoleName"))


def deploy(account: str, source_role_arn: str) -> dict[str, Any]:
    """target-role.yaml deployed in `account`, trusting `source_role_arn`."""
    deployment = cfn.Deployment(
        TEMPLATE,
        account=account,
        parameters={"SourceRoleArn": source_role_arn, "ExternalId": DESCRIPTION["stack"]["external_id"]},
    )
    role = deployment.resolve(TEMPLATE["Resources"]["TargetRole"]["Properties"])
    policies = [{"name": p["PolicyName"], "policy": p["PolicyDocument"]} for p in cfn.listed(role.get("Policies", []))]
    return {
        "arn": f"arn:aws:iam::{account}:role/{role['RoleName']}",
        "trust": role["AssumeRolePolicyDocument"],
        "policies": policies,
    }


def accounts(body: dict[str, Any]) -> dict[str, Any]:
    """`POST /_testbed/accounts`: {"accounts": [...], "without_role": [...]}."""
    import authorize

    source = authorize.roles().role_arn("ami-distribute")
    with LOCK:
        for account in body.get("accounts", []):
            TARGETS[account] = deploy(account, source)
        for account in body.get("without_role", []):
            TARGETS.pop(account, None)
    return {"accounts": sorted(TARGETS)}


def target_role(account: str) -> dict[str, Any] | None:
    with LOCK:
        return TARGETS.get(account)


def assumed(access_key: str) -> tuple[str, str] | None:
    """(account, session name) of credentials moto's AssumeRole made for a target role, else
    None (a test's own administrator session in a target account is not evaluated, as a test's
    own set-up calls are not)."""
    from moto.sts.models import sts_backends

    for account, partitions in list(sts_backends.items()):
        backend = partitions.get("aws") if hasattr(partitions, "get") else None
        if backend is None:
            continue
        role = backend.get_assumed_role_from_access_key(access_key)
        if role is not None:
            target = target_role(account)
            return (account, role.session_name) if target and target["arn"] == role.role_arn else None
    return None


QUEUE: list[str] = []


def distribute_queue(host: str) -> str:
    """The distribution queue's URL (made at the first call, as the stack makes it)."""
    from moto.sqs.models import sqs_backends

    account, region = DESCRIPTION["account"], DESCRIPTION["region"]
    if not QUEUE:
        backend = sqs_backends[account][region]
        dead = backend.create_queue("ami-lifecycle-distribute-dead-letter")
        backend.create_queue(
            "ami-lifecycle-distribute",
            VisibilityTimeout="5400",
            RedrivePolicy=json.dumps({"deadLetterTargetArn": dead.queue_arn, "maxReceiveCount": 3}),
        )
        QUEUE.append(f"http://{host}/{account}/ami-lifecycle-distribute")
    return QUEUE[0]


def organization(body: dict[str, Any]) -> dict[str, Any]:
    """`POST /_testbed/organization`: {"units": {"<name>": ["<account>", ...]}, "management":
    "<account>"}: the management account (the stack's unless named) holds an organization whose
    OUs (under the root) hold exactly these accounts; an account of an earlier call that a unit no
    longer lists moves back to the root. Answers each OU's ARN, and (with `management`) the ARN
    of the reader role there that trusts ami-distribute's role."""
    from moto.organizations.models import organizations_backends

    management = body.get("management", DESCRIPTION["account"])
    MANAGEMENT[0] = management
    answer: dict[str, Any] = {}
    if management != DESCRIPTION["account"]:
        import authorize

        arn = f"arn:aws:iam::{management}:role/ami-lifecycle-organizations-reader"
        source = authorize.roles().role_arn("ami-distribute")
        READERS[arn] = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": source}, "Action": "sts:AssumeRole"}],
        }
        answer["reader_role_arn"] = arn
    backend = organizations_backends[management]["aws"]
    if backend.org is None:
        backend.create_organization(region="us-east-1", FeatureSet="ALL")
    assert backend.org is not None
    root = backend.org.root_id
    arns: dict[str, str] = {}
    for name, members in body.get("units", {}).items():
        ou = next((o for o in backend.ou if getattr(o, "name", None) == name), None)
        if ou is None:
            created = backend.create_organizational_unit(ParentId=root, Name=name)["OrganizationalUnit"]
            ou = backend.get_organizational_unit_by_id(created["Id"])
        arns[name] = ou.arn
        for account in backend.accounts:
            if account.parent_id == ou.id and account.id not in members:
                account.parent_id = root
        for member in members:
            found = next((a for a in backend.accounts if a.id == member), None)
            if found is None:
                backend.create_account(AccountName=f"target-{member}", Email=f"{member}@example.com")
                found = backend.accounts[-1]
                found.id = member
            found.parent_id = ou.id
    return {"units": arns, **answer}


def launchable_by(ami: Any, account: str) -> bool:
    """Whether `account` may launch `ami` (its launch permissions: public, the account, or an
    OU or organization of the stack's organization the account is in)."""
    if ami.is_public or {"UserId": account} in ami.launch_permissions:
        return True
    from moto.organizations.models import organizations_backends

    backend = organizations_backends[MANAGEMENT[0]]["aws"]
    if backend.org is None:
        return False
    member = next((a for a in backend.accounts if a.id == account), None)
    if member is None:
        return False
    ous = {p.get("OrganizationalUnitArn") for p in ami.launch_permissions}
    orgs = {p.get("OrganizationArn") for p in ami.launch_permissions}
    ou = next((o for o in backend.ou if o.id == member.parent_id), None)
    return (ou is not None and ou.arn in ous) or backend.org.arn in orgs
