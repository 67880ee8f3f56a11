"""redis_worker.StudioWorker uses RQ through its public API only. This file pins the
signature of every RQ method it overrides or calls, as in the RQ of requirements.txt: an
RQ upgrade that changes one fails here, naming it, instead of breaking workers silently
(RQ's main branch already has get_heartbeat_ttl(job, working_time) and
maintain_heartbeats(job, execution))."""

import inspect

import pytest
from rq import SimpleWorker, get_current_job

from redis_protocol import StudioJob
from redis_worker import StudioWorker

# Overridden by StudioWorker, with RQ's own signature.
OVERRIDDEN = {
    "check_for_suspension": ["self", "burst"],
    "dequeue_job_and_maintain_ttl": ["self", "timeout", "max_idle_time=None"],
    "execute_job": ["self", "job", "queue"],
    "get_heartbeat_ttl": ["self", "job"],
    "handle_warm_shutdown_request": ["self"],
    "heartbeat": ["self", "timeout=None", "pipeline=None"],
    "run_maintenance_tasks": ["self"],
    "teardown": ["self"],
}
# Called by StudioWorker.
CALLED = {
    "maintain_heartbeats": ["self", "job"],
}
# Keyword arguments StudioWorker passes on (its work() passes the caller's on unchanged).
PASSED = {
    "__init__": {"queues", "name", "connection", "serializer", "worker_ttl", "job_class"},
    "work": {"burst", "logging_level"},
}


# Job's attributes that import what a job names: StudioJob overrides each of them.
IMPORTING = {"func", "success_callback", "failure_callback", "stopped_callback"}


def parameters(function) -> list[str]:
    return [p.name if p.default is p.empty else f"{p.name}={p.default!r}"
            for p in inspect.signature(function).parameters.values()]


def test_every_rq_method_the_worker_overrides_is_pinned_here():
    overridden = {name for name, value in vars(StudioWorker).items()
                  if callable(value) and hasattr(SimpleWorker, name) and name != "__init__"}
    assert overridden == set(OVERRIDDEN) | {"work"}


@pytest.mark.parametrize("name", sorted(OVERRIDDEN))
def test_rq_still_calls_the_overridden_method_as_the_worker_defines_it(name):
    assert parameters(getattr(SimpleWorker, name)) == OVERRIDDEN[name], f"RQ changed {name}: update StudioWorker"
    assert parameters(getattr(StudioWorker, name)) == OVERRIDDEN[name]


@pytest.mark.parametrize("name", sorted(CALLED))
def test_the_rq_methods_the_worker_calls_keep_their_signature(name):
    assert parameters(getattr(SimpleWorker, name)) == CALLED[name], f"RQ changed {name}: update StudioWorker"


@pytest.mark.parametrize("name", sorted(PASSED))
def test_the_arguments_the_worker_passes_to_rq_still_exist(name):
    assert PASSED[name] <= set(inspect.signature(getattr(SimpleWorker, name)).parameters), name


def test_draw_job_finds_its_rq_job_without_arguments():
    assert parameters(get_current_job) == ["connection=None", "job_class=None"]


def test_every_way_rq_imports_what_a_job_names_is_overridden_by_the_studios_job():
    from rq.job import Job

    importing = {name for name, value in vars(Job).items()
                 if isinstance(value, property) and "import_attribute" in inspect.getsource(value.fget)}
    assert importing == IMPORTING, "RQ changed how a job's function or callbacks are imported: update StudioJob"
    assert all(isinstance(vars(StudioJob)[name], property) for name in IMPORTING)


def test_the_queue_and_its_registries_take_the_studios_job_class():
    from rq import Queue

    assert "job_class" in inspect.signature(Queue.__init__).parameters
