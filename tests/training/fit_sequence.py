"""Helper process for test_distributed_fit.py (not a test): ``python fit_sequence.py COMMANDS OUT``.

One process of a group the test starts itself, as Lightning documents for processes launched
externally (``LOCAL_RANK``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` set; ``--trainer.devices``
processes per node): it runs several ``polyguide fit`` commands one after another through the
command's own ``main`` (their arguments after ``polyguide``: a JSON list of lists in the file COMMANDS)
and writes their exit codes to ``OUT.rank<LOCAL_RANK>.json``. The group pays for starting Python and
importing torch and Lightning once for all the commands; the process group made by the first
command is reused by the next ones (Lightning does not make a second one).
"""

import json
import os
import sys
import traceback
from pathlib import Path

from framework.cli.main import main


def run(commands: list[list[str]]) -> list[int]:
    """Exit code of each command, run in order (1 with the traceback on standard error for a crash)."""
    codes = []
    for argv in commands:
        try:
            codes.append(main(argv))
        except Exception:
            traceback.print_exc()
            codes.append(1)
    return codes


if __name__ == "__main__":
    commands, out = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2]
    Path(f"{out}.rank{os.environ['LOCAL_RANK']}.json").write_text(json.dumps(run(commands)))
