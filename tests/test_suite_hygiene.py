"""The test suite cleans up after itself."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_test_session_leaves_no_model_cache_in_the_temp_dir(tmp_path):
    # A session that builds the tiny models (hf_cache fixture) must remove them at its end.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_generator.py::test_token_counts_use_the_pipeline_tokenizer"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert list(tmp_path.glob("storyboard-hf-cache-*")) == []
