"""The gate every request passes: the API contract (contract.py) and IAM (authorize.py)."""

from __future__ import annotations

import json
from typing import Any

import authorize
import contract
import iam_requests
from werkzeug.wrappers import Response

from .faults import ec2_error
from .observe import MOTO_LOCK


# The contract check (contract.py). botocore's service model is the data the AWS SDKs are
# generated from; a request that breaks it is refused as the service refuses it: EC2 with
# MissingParameter, UnknownParameter or InvalidParameterValue
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html), in its XML error
# format; EventBridge, KMS and SSM with ValidationException in their JSON error format.
def denied_response(environ: dict[str, Any], call: Any, decision: Any) -> Response:
    """IAM's refusal, as the service sends it: EC2's `UnauthorizedOperation` with an encoded
    authorization message (here base64 JSON, where AWS encrypts it for sts:DecodeAuthorizationMessage),
    the JSON services' `AccessDeniedException`."""
    import base64

    a = decision.authorization
    role = authorize.roles().role_arn(call.caller)
    why = f" ({a.why})" if a.why else ""
    message = (
        f"User: {role} is not authorized to perform: {a.action} on resource: {a.resource}{why} "
        f"because no identity-based policy allows the {a.action} action"
    )
    if "HTTP_X_AMZ_TARGET" not in environ and call.service == "ec2":
        encoded = base64.b64encode(
            json.dumps(
                {"action": a.action, "resource": a.resource, "context": a.context, "result": decision.result}
            ).encode()
        ).decode()
        return ec2_error(
            "UnauthorizedOperation",
            f"You are not authorized to perform this operation. {message}. "
            f"Encoded authorization failure message: {encoded}",
            403,
            "iam",
        )
    if call.service == "sts":
        # STS API reference, "Common Errors": AccessDenied, 403.
        return sts_error("AccessDenied", message, 403, "iam")
    body = json.dumps({"__type": "AccessDeniedException", "message": message})
    return Response(
        body,
        status=400,
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": "AccessDeniedException", "x-amzn-RequestId": "iam"},
    )


def authorize_call(environ: dict[str, Any], body: bytes) -> Response | None:
    """IAM on a request a function made (tests/support/authorize.py): its denial, or None."""
    call = authorize.parse(environ, body)
    if call is None:
        return None
    try:
        with MOTO_LOCK:
            authorize.CURRENT_ACCOUNT[0] = authorize.account_of(call.caller)
            requests = iam_requests.requests_for(call)
            if requests is None:
                with authorize.DECISIONS_LOCK:
                    UNEVALUATED.add(f"{call.caller} {call.service}:{call.action}")
                authorize.log({"caller": call.caller, "call": f"{call.service}:{call.action}", "result": "Unevaluated"})
                return None
            decision = authorize.authorize(call, requests)
    except Exception as err:  # noqa: BLE001 - the evaluator's own failure: loud, never an allow
        import traceback

        traceback.print_exc()
        with authorize.DECISIONS_LOCK:
            UNEVALUATED.add(f"{call.caller} {call.service}:{call.action}: evaluator failed: {err!r}")
        authorize.log(
            {
                "caller": call.caller,
                "call": f"{call.service}:{call.action}",
                "result": "EvaluatorFailed",
                "error": repr(err),
            }
        )
        return (
            ec2_error("InternalError", f"the test bed's IAM evaluation failed: {err!r}", 500, "iam")
            if call.service == "ec2"
            else Response(
                json.dumps({"__type": "InternalFailure", "message": repr(err)}),
                status=500,
                content_type="application/x-amz-json-1.1",
            )
        )
    return denied_response(environ, call, decision) if decision is not None else None


# Calls no builder of tests/support/iam_requests.py knows: reported, and the test run fails.
UNEVALUATED: set[str] = set()


def sts_error(code: str, message: str, status: int, request_id: str) -> Response:
    """An error as STS answers it: the query protocol's XML error format."""
    from xml.sax.saxutils import escape

    xml = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return Response(xml, status=status, content_type="text/xml")


def contract_response(violation: contract.Violation) -> Response:
    if violation.protocol == "ec2":
        return ec2_error(violation.code, violation.message, 400, "contract")
    if violation.protocol == "sts":
        return sts_error(violation.code, violation.message, 400, "contract")
    body = json.dumps({"__type": violation.code, "message": violation.message})
    return Response(
        body,
        status=400,
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": violation.code, "x-amzn-RequestId": "contract"},
    )


#: Whether the gate evaluates IAM (off with --plain, --no-iam or AMI_TESTBED_IAM=off).
IAM_ENABLED = [True]


def iam_report() -> dict[str, Any]:
    """`GET /_testbed/iam`: IAM's decisions, the calls no evaluator knows, and whether IAM is on."""
    return {**authorize.report(), "unevaluated": sorted(UNEVALUATED), "enabled": IAM_ENABLED[0]}
