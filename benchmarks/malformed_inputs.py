"""The malformed-input table of issue 13: every CLI command over tests/malformed.py's corpus, counted per category
as clean / traceback / unclear / memory / hang / accepted / leftover.

    python benchmarks/malformed_inputs.py [--src OTHER_TREE/src] [--isolate] [-o results.json]

``--src`` runs the same corpus against another checkout's package (e.g. a ``git worktree`` of an older commit), for
a before/after table measured with one corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import malformed  # noqa: E402  (tests/malformed.py: the corpus and its worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="the package source folder to test (default: the installed unilip)")
    parser.add_argument("-o", "--out", type=Path, help="also write the per-case results (JSON) here")
    parser.add_argument("--isolate", action="store_true", help="one process per case (for code that may hang in C "
                                                               "or be killed for memory; ~4 s per case)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory(prefix="unilip-malformed-") as tmp:
        subprocess.run([sys.executable, str(TESTS / "malformed.py"), "--make", tmp], check=True, env=env)
        results = Path(tmp) / "results.json"
        mode = ["--isolate"] if args.isolate else []
        subprocess.run([sys.executable, str(TESTS / "malformed.py"), *mode, tmp, str(results)], check=True, env=env)
        rows = json.loads(results.read_text())
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print(malformed.table(rows))


if __name__ == "__main__":
    main()
