"""The local AWS test bed: moto's server, with the EC2 behaviours our safety depends on.

moto 5.2.5 departs silently from EC2 where this project's safety or idempotency depends on the
real behaviour (the measured list is in the product brief). The test bed runs moto's own WSGI
application in-process and patches its models so that each of those calls behaves as the AWS
API reference documents. One module per section of AWS (images, snapshots, instances, launch
templates, sharing, references, usage reports, the Recycle Bin, KMS, SSM, EventBridge and its
Scheduler, eventual consistency), each with its `patch()`; every patch cites the page it
follows (`{REF}` in a comment is https://docs.aws.amazon.com/AWSEC2/latest/APIReference), and
`tests/tests/testbed/<section>.rs` proves it with a test that fails against plain moto.

Every AWS request first passes the gate (`gate.py`): the services' published API contract
(`contract.py`: botocore's service model) and IAM (`authorize.py`: the calling function's role
from template.yaml). Test-only routes (`/_testbed/...`, never called by the functions), how a
harness starts the test bed and what a function's environment holds are described once, in
`description.json`, which both harnesses and the server read. `server.py` serves it all;
`tests/support/moto_launcher.py` starts it.
"""

import os

# moto reads its catalogue of public AMIs at import: ours (owned by another account).
os.environ.setdefault(
    "MOTO_AMIS_PATH", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "amis.json")
)
