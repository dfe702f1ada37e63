"""Starts the local AWS test bed (the `testbed` package beside this file; its description,
`testbed/description.json`, says how a harness runs it and what it serves).

Usage: python tests/support/moto_launcher.py [--port N] [--plain] [--no-contract] [--no-iam]
"""

from testbed.server import main

if __name__ == "__main__":
    main()
