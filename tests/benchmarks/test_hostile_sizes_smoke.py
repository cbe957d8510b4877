"""benchmarks/hostile_sizes.py --quick: the crafted checkpoint is refused (exit 2) and every case's
peak memory is recorded (never compared with a timing)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_hostile_sizes_quick(tmp_path):
    script = str(ROOT / "benchmarks/hostile_sizes.py")
    subprocess.run([sys.executable, script, "--quick", "--out", str(tmp_path)], check=True,
                   capture_output=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    rows = {r["case"]: r for r in json.loads((tmp_path / "hostile_sizes.json").read_text())}
    assert rows["baseline: image sample, --n 16"]["exit"] == 0
    crafted = rows["checkpoint declaring width 8192 (tiny weights)"]
    assert crafted["exit"] == 2 and "declares backbone." in crafted["stderr"]
    assert all(r["peak_mib"] > 0 for r in rows.values())
