"""`worker.py` started where it cannot work says why in one line, naming the setting that fixes
it, and exits non-zero (a wrong password: tests/test_redis_backend.py, with a real redis-server)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_a_worker_with_no_redis_to_reach_says_so_in_one_line_naming_the_setting(tmp_path):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = subprocess.run([sys.executable, "worker.py", "--queue", f"redis://127.0.0.1:{port}/0", "--model", "tiny",
                             "--data-dir", str(tmp_path)], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=120)
    said = (worker.stdout + worker.stderr).strip()
    assert worker.returncode != 0 and len(said.splitlines()) == 1, said
    assert f"127.0.0.1:{port}" in said and "cannot be reached" in said and "STORYBOARD_QUEUE_URL" in said, said
