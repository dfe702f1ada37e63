"""KMS: AWS managed keys, the stack's signing key, grants (idempotent, retired, eventually consistent)."""

from __future__ import annotations

import time
from typing import Any

from moto.kms.models import KmsBackend

from .common import CREATE_LOCK

# KMS ({KMS_REF}): keys behind the reserved `alias/aws/...` aliases (such as the default EBS
# key alias/aws/ebs) are AWS managed keys: DescribeKey reports KeyManager=AWS.
KMS_REF = "https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#aws-managed-key"


_moto_create_alias = KmsBackend.create_alias


def create_alias(self: Any, target_key_id: str, alias_name: str) -> Any:
    alias = _moto_create_alias(self, target_key_id, alias_name)
    if alias_name.startswith("alias/aws/"):
        self.keys[self.get_key_id(target_key_id)].key_manager = "AWS"
    return alias


# The stack's HMAC key (template.yaml `SigningKey`: KeySpec HMAC_256, KeyUsage
# GENERATE_VERIFY_MAC), made once per test bed in the default account's us-east-1, as the
# template makes it in the stack's region. moto serves GenerateMac and VerifyMac as KMS does
# (KMSInvalidMacException for a MAC that does not verify).
SIGNING_KEY: list[str] = []


def signing_key() -> str:
    if not SIGNING_KEY:
        from moto.kms.models import kms_backends

        key = kms_backends["123456789012"]["us-east-1"].create_key(
            policy=None,
            key_usage="GENERATE_VERIFY_MAC",
            key_spec="HMAC_256",
            description="ami-lifecycle signing key (test bed)",
            tags=None,
        )
        SIGNING_KEY.append(key.arn)
    return SIGNING_KEY[0]


# CreateGrant (KMS API reference, `Name`): "When this value is present, you can retry a
# CreateGrant request with identical parameters; if the grant already exists, the original
# GrantId is returned without creating a new grant." moto makes a new grant every time.
_moto_create_grant = KmsBackend.create_grant


def create_grant(
    self: Any,
    key_id: str,
    grantee_principal: str,
    operations: list[str],
    name: str,
    constraints: dict[str, Any],
    retiring_principal: str,
) -> tuple[str, str]:
    with CREATE_LOCK:
        if name:
            key = self.describe_key(key_id)
            for grant in key.grants.values():
                if (grant.name, grant.grantee_principal, sorted(grant.operations or [])) == (
                    name,
                    grantee_principal,
                    sorted(operations or []),
                ):
                    from moto.moto_api._internal import mock_random

                    return grant.id, mock_random.get_random_hex()
        return _moto_create_grant(self, key_id, grantee_principal, operations, name, constraints, retiring_principal)


# RetireGrant (KMS API reference, Errors): a grant that does not exist (retired already) is
# `NotFoundException`; moto retires nothing and answers success.
_moto_retire_grant = KmsBackend.retire_grant


def retire_grant(self: Any, key_id: str, grant_id: str, grant_token: str) -> None:
    from moto.kms.exceptions import NotFoundException

    key = self.describe_key(key_id)
    if not grant_token and grant_id not in key.grants:
        raise NotFoundException(f"Grant ID {grant_id} not found")
    if not grant_token and GRANT_CLOCK["lag_seconds"] > 0:
        RETIRED_GRANTS[grant_id] = (key.id, key.grants[grant_id], time.monotonic() + GRANT_CLOCK["lag_seconds"])
    _moto_retire_grant(self, key_id, grant_id, grant_token)


# Grants are eventually consistent (KMS Developer Guide, "Grants in AWS KMS", eventual
# consistency: a created or retired grant can take a while to be seen everywhere). A retired
# grant stays in ListGrants for `lag_seconds` (`POST /_testbed/kms {"grant_lag_seconds"}`;
# default 0), while RetireGrant of it answers NotFoundException, as it is gone.
GRANT_CLOCK = {"lag_seconds": 0.0}


RETIRED_GRANTS: dict[str, tuple[str, Any, float]] = {}


_moto_list_grants = KmsBackend.list_grants


def list_grants(self: Any, key_id: str, grant_id: str) -> list[Any]:
    grants = list(_moto_list_grants(self, key_id, grant_id))
    key = self.describe_key(key_id)
    now = time.monotonic()
    for gid, (kid, grant, until) in list(RETIRED_GRANTS.items()):
        if until <= now:
            del RETIRED_GRANTS[gid]
        elif kid == key.id and (not grant_id or grant_id == gid):
            grants.append(grant)
    return grants


def kms_clock(body: dict[str, Any]) -> dict[str, Any]:
    """Test set-up: how long a retired grant is still listed (`grant_lag_seconds`)."""
    GRANT_CLOCK["lag_seconds"] = float(body.get("grant_lag_seconds", GRANT_CLOCK["lag_seconds"]))
    return {"grant_lag_seconds": GRANT_CLOCK["lag_seconds"]}


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    KmsBackend.create_grant = create_grant
    KmsBackend.retire_grant = retire_grant
    KmsBackend.list_grants = list_grants
    KmsBackend.create_alias = create_alias
