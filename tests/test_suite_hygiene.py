"""The test suite cleans up after itself."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a whole pytest session that builds the tiny models
def test_a_test_session_leaves_no_model_cache_in_the_temp_dir(tmp_path):
    # A session that builds the tiny models (hf_cache fixture) must remove them at its end.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_generator.py::test_token_counts_use_the_pipeline_tokenizer"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert list(tmp_path.glob("storyboard-hf-cache-*")) == []


def test_the_quick_loop_leaves_out_every_test_of_models_browsers_and_redis(tmp_path):
    # `make quick` runs -m "not slow"; the conftest marks a test slow by the fixtures it uses.
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "not slow", "-p", "no:cacheprovider",
         "tests/test_browser.py", "tests/test_redis_backend.py", "tests/test_app.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    collected = [line for line in out.stdout.splitlines() if "::" in line]
    assert not [line for line in collected if line.startswith("tests/test_redis_backend.py")]
    assert "tests/test_browser.py::test_generate_redraw_reorder_export" not in collected  # a real browser
    assert "tests/test_browser.py::test_the_page_has_no_inline_script_or_style" in collected  # reads files only
    assert any(line.startswith("tests/test_app.py::") for line in collected)
