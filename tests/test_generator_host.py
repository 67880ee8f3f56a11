"""The generator host both backends share (generator_host.py): loading on first use, the
warm-up between jobs, and how a job ends. The backends' own tests run it end to end."""

import threading

import pytest

from backend import NOT_DRAWN, ModelState, Outcome, WarmUpTracker
from config import load_settings
from fakes import FakeGenerator, Warming
from generator_host import GeneratorHost
from storage import Status


@pytest.fixture
def settings(tmp_path):
    return load_settings({}, {"data_dir": str(tmp_path), "model": "tiny", "identity_scoring": False})


class NoSink:
    """The job's facts, dropped: these tests look at the outcome only."""

    def __getattr__(self, name):
        return lambda *args: None


def test_model_states_keep_the_words_health_says():
    assert [str(s) for s in ModelState] == ["not_loaded", "loading", "warming_up", "ready", "error"]


def test_a_failed_load_fails_the_job_with_words_and_the_next_job_loads_again(settings):
    loads = []

    def load():
        loads.append(1)
        raise RuntimeError("no weights")

    host = GeneratorHost(settings, load)
    outcome = host.run(1, lambda: pytest.fail("no spec is read without a model"), NoSink(), threading.Event())
    assert outcome == Outcome(Status.FAILED, "no weights", NOT_DRAWN) and outcome.frames_to == Status.FAILED
    assert (host.state, host.error) == (ModelState.ERROR, "no weights")
    host.run(2, lambda: None, NoSink(), threading.Event())
    assert len(loads) == 2


def test_a_job_canceled_before_it_starts_loads_nothing(settings):
    cancel = threading.Event()
    cancel.set()
    host = GeneratorHost(settings, lambda: pytest.fail("the model was loaded for a canceled job"))
    outcome = host.run(1, lambda: None, NoSink(), cancel)
    assert outcome == Outcome(Status.CANCELED) and outcome.frames_to == Status.PENDING
    assert host.state == ModelState.NOT_LOADED


def test_errors_that_are_not_the_jobs_own_are_left_to_the_caller(settings):
    class RedisDown(Exception):
        pass

    def spec():
        raise RedisDown()

    host = GeneratorHost(settings, FakeGenerator)
    assert host.run(1, spec, NoSink(), threading.Event()).status == Status.FAILED
    with pytest.raises(RedisDown):
        host.run(2, spec, NoSink(), threading.Event(), raises=(RedisDown,))


def test_every_change_of_state_is_announced_in_order(settings):
    seen = []
    generator = Warming(FakeGenerator(), graphs=2, hold=0)
    host = GeneratorHost(settings, lambda: generator, on_change=lambda: seen.append((host.state, host.warm_up)))
    host.ensure()
    while host.warm_one():
        pass
    assert [state for state, _ in seen] == [ModelState.LOADING, ModelState.READY, ModelState.WARMING_UP,
                                            ModelState.WARMING_UP, ModelState.WARMING_UP, ModelState.WARMING_UP,
                                            ModelState.READY]
    assert seen[-1][1] is None and generator.log == ["compile"] * 2


def test_a_held_warm_up_the_test_never_lets_go_shows_in_the_log_the_test_checks():
    # The worker catches what a warm-up raises, so the fake must not raise: it logs.
    generator = Warming(FakeGenerator(), graphs=1, hold=1, patience=0)
    generator.plan_warm_up()
    WarmUpTracker().step(generator)
    assert generator.log == ["compile", Warming.NEVER_LET_GO]
