"""Every LoRA operation of docs/lora.md, measured: runs tests/test_lora.py with its recording on
and writes each check (model, when, operation, SQNR against bf16 + the same LoRA, SQNR of the
model before the change) to benchmarks/results/lora-operations-cpu-<date>.json.

    .venv/bin/python benchmarks/lora_operations.py [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = (
        ROOT / "benchmarks" / "results" / f"lora-operations-cpu-{datetime.date.today().isoformat()}.json"
    )
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args()
    env = {**os.environ, "FP8PASS_RECORD_LORA": str(args.out.resolve())}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_lora.py"], cwd=ROOT, env=env)
    print("wrote", args.out)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
