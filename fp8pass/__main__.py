"""``python -m fp8pass COMMAND``: the command line (:mod:`fp8pass.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
