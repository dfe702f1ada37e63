"""Start-up time through the Lambda runtime API: from spawning a function's binary to the answer
of an invocation that was already waiting for it (a request refused at once, so no AWS call is
in the figure: process start, configuration and policy parsing, client set-up, the runtime's
first /next, the answer).

Run with `scripts/bench-startup [--profile release] [--runs 20]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from harness import FUNCTIONS, Watch, binary  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="debug")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    binaries = {n: binary(n, args.profile) for n in FUNCTIONS}
    policies = Path(tempfile.mkdtemp()) / "policies.json"
    policies.write_text((Path(__file__).resolve().parent.parent / "examples" / "policies.json").read_text())
    watch = Watch()
    port = watch.port
    try:
        # No endpoint: the refused request makes no AWS call.
        env = dict(watch.runtime_env(policies), RUST_LOG="error")
        rows = []
        for name, path in binaries.items():
            times = []
            for _ in range(args.runs):
                answer: dict = {}

                def invoke(answer: dict = answer) -> None:
                    body = json.dumps({"policies": ["no-such-policy"]}).encode()
                    req = urllib.request.Request(
                        f"http://127.0.0.1:{port}/2015-03-31/functions/_/invocations", data=body, method="POST"
                    )
                    try:
                        answer["body"] = urllib.request.urlopen(req).read()
                    except urllib.error.HTTPError as err:  # a function error comes back as a 500
                        answer["body"] = err.read()
                    answer["at"] = time.perf_counter()

                waiter = threading.Thread(target=invoke)
                waiter.start()
                time.sleep(0.2)  # the invocation is queued before the process exists
                t0 = time.perf_counter()
                proc = subprocess.Popen([str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                waiter.join(timeout=30)
                proc.kill()
                proc.wait()
                if "errorType" not in answer.get("body", b"").decode():
                    raise SystemExit(f"{name}: unexpected answer {answer}")
                times.append((answer["at"] - t0) * 1000)
            rows.append((name, statistics.median(times), max(times)))
            print(
                f"{name} ({args.profile}): start-up to first answer median {statistics.median(times):.1f} ms, "
                f"max {max(times):.1f} ms over {args.runs} runs",
                flush=True,
            )
    finally:
        watch.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
