"""Shared fixtures. Everything runs offline.

huggingface_hub reads HF_HUB_CACHE and HF_HUB_OFFLINE when it is imported, so they are set
here, before any test module imports diffusers: the tiny models are then found under the
REAL hub ids in a temporary cache, and the default loading path is the one tested.
"""

import os
import shutil
import tempfile
from pathlib import Path

_CACHE = Path(tempfile.mkdtemp(prefix="storyboard-hf-cache-"))
os.environ["HF_HUB_CACHE"] = str(_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _name in [k for k in os.environ if k.startswith("STORYBOARD_")]:
    del os.environ[_name]  # a developer's own settings must not change the tests

import pytest  # noqa: E402


# A test that uses any of these is slow: the tiny real models, a real browser, a real
# redis-server. `make quick` leaves them out; `make test` (and CI) runs everything.
SLOW_FIXTURES = frozenset({"hf_cache", "browser", "redis_server"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_unconfigure(config):
    """The tiny models' cache (~25 MB) goes with the session that made it."""
    shutil.rmtree(_CACHE, ignore_errors=True)


ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="session")
def hf_cache() -> Path:
    """A Hugging Face cache holding the tiny SDXL and IP-Adapter repos under their real ids."""
    import tiny_models

    tiny_models.build(_CACHE)
    return _CACHE


@pytest.fixture(scope="session")
def tiny_settings_factory(hf_cache, tmp_path_factory):
    from config import load_settings

    def make(**overrides):
        values = {"model": "tiny", "hf_cache_dir": str(hf_cache), "identity_scoring": False,
                  "data_dir": str(tmp_path_factory.mktemp("data"))}
        values.update(overrides)
        return load_settings({}, values)

    return make


@pytest.fixture(scope="session")
def tiny_generator(tiny_settings_factory):
    """One tiny generator for the session (loading is cheap, but shared state is realistic)."""
    from local_image_generator import StoryboardGenerator

    return StoryboardGenerator.load(tiny_settings_factory())


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def llm_server():
    """A chat-completions stand-in on 127.0.0.1 (tests/llm_standin.py), stopped after the test."""
    from llm_standin import StandIn

    server = StandIn().start()
    yield server
    server.stop()


# --- The app on a fake generator, for route tests ---------------------------------------------


@pytest.fixture
def generator():
    """A fake generator: instant panels, pauses and failures on demand (tests/fakes.py)."""
    from fakes import FakeGenerator

    return FakeGenerator()


@pytest.fixture
def make_app(tmp_path):
    """make_app(generator=None, data_dir=None, **kwargs) -> a studio (tests/helpers.build_app)
    on a data dir of its own; every one's backend stopped after the test."""
    from helpers import build_app
    from studio import studio_of

    apps = []

    def make(generator=None, data_dir=None, **kwargs):
        apps.append(build_app(data_dir or tmp_path / f"data-{len(apps)}", generator, **kwargs))
        return apps[-1]

    yield make
    for app in apps:
        studio_of(app).backend.stop()


@pytest.fixture
def app(make_app, generator):
    """The studio on ``generator``; its worker stopped after."""
    return make_app(generator)


@pytest.fixture
def client(app):
    return app.test_client()
