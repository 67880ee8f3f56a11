"""The one generator a worker owns, for both backends: the embedded worker's thread
(worker.py) and a Redis worker process (redis_worker.StudioWorker) each hold one host.

The host loads the model on first use (again on the next job when the load failed), runs
its compiled-graph warm-up one graph at a time while there is nothing to draw, judges
panels with the face scorer when a board locks identities, and turns a job's drawing into
its :class:`backend.Outcome`. Its state (:class:`backend.ModelState`) is what health says.
"""

from __future__ import annotations

import logging
from typing import Callable

import step_time
from backend import NOT_DRAWN, ModelState, Outcome, WarmUp, WarmUpTracker, make_judge, user_message
from config import Settings
from drawing import JobSpec, draw
from storage import Status

log = logging.getLogger(__name__)


class GeneratorHost:
    """``on_change`` is called whenever the state or the warm-up progress changes (a Redis
    worker then reports it at once, not at its next heartbeat)."""

    def __init__(self, settings: Settings, load_generator: Callable[[], object],
                 load_scorer: Callable[[], object] | None = None, on_change: Callable[[], None] = lambda: None):
        self.settings = settings
        self._load_generator = load_generator
        self._load_scorer = load_scorer if settings.identity_scoring else None
        self._on_change = on_change
        self.generator = None
        self._scorer = None
        self.state = ModelState.NOT_LOADED
        self.error: str | None = None  # why the last load failed
        self.warm_up: WarmUp | None = None  # while a compiled model warms up
        self._tracker = WarmUpTracker()
        self._step_time: step_time.StepTime | None = None  # read from the data dir with the first job

    def ensure(self):
        """The generator, loaded now if it is not yet; raises what the load raised."""
        if self.generator is not None:
            return self.generator
        self._set(ModelState.LOADING, None)
        try:
            generator = self._load_generator()
        except Exception as error:  # noqa: BLE001 - health shows it; the next job retries
            log.exception("model failed to load")
            self._set(ModelState.ERROR, str(error))
            raise
        self.generator = generator
        self._set(ModelState.READY, None)
        self._tracker.plan(generator, self._show_warm_up)  # compiled between jobs (warm_one)
        return generator

    def warm_one(self) -> bool:
        """With nothing to draw: compile the generator's next waiting graph. Returns whether
        there was one (a job that arrives meanwhile waits for that graph only)."""
        return self._tracker.run_one(self.generator, self._show_warm_up)

    def run(self, job_id: int, spec: Callable[[], JobSpec | None], sink, cancel,
            skip: frozenset[int] = frozenset(), raises: tuple[type[BaseException], ...] = ()) -> Outcome:
        """Draw one job into ``sink`` and say how it ended. ``spec`` is read once the model
        is loaded (None: nothing left to draw, e.g. the board was deleted); ``skip``: panels
        already delivered; ``raises``: errors that are not the job's own (Redis down), left
        for the caller to retry. Any other error fails the job with words, never the worker."""
        from local_image_generator import GenerationCancelled

        try:
            if cancel.is_set():  # canceled while being taken: no model load, no drawing
                raise GenerationCancelled()
            generator = self.ensure()
            if cancel.is_set():  # canceled while the model loaded
                raise GenerationCancelled()
            job = spec()
            if job is not None:
                measured = self._step_time or step_time.read(self.settings)
                result = draw(generator, job, sink, cancel, self._judge(generator) if job.identity_lock else None,
                              skip=skip, previews=self.settings.live_previews,
                              seconds_per_pass=measured and measured.seconds_per_pass)
                self._measured(job, result)
        except GenerationCancelled:
            return Outcome(Status.CANCELED)
        except raises:
            raise
        except Exception as error:  # noqa: BLE001 - one bad job must not stop the worker
            log.exception("job %s failed", job_id)
            return Outcome(Status.FAILED, user_message(error, self.settings.data_path), NOT_DRAWN)
        return Outcome(Status.DONE)

    def _measured(self, job: JobSpec, result) -> None:
        """Keep the step time this board measured, for the next board's estimates and restarts
        (not a refine's: it runs a share of its mode's steps; not a board's drawn with the
        consistent look: its reference rows are passes the mode does not count)."""
        if job.strength is not None or result is None:
            return
        done = [panel for panel in result.panels if panel.status == "done"]
        if any(panel.ran is not None and panel.ran.look_references for panel in done):
            return
        self._step_time = step_time.record(self.settings, job.preset, [panel.seconds for panel in done],
                                           result.timings.get("panels_per_call") or 1) or self._step_time

    def _judge(self, generator):
        """The identity judge, or None when faces are not scored (turned off, or no scorer)."""
        if self._scorer is None and self._load_scorer is not None:
            try:
                self._scorer = self._load_scorer()
            except Exception:  # noqa: BLE001 - scoring is optional; drawing goes on without it
                log.exception("face scorer unavailable; panels will not be scored")
                self._load_scorer = None
        if self._scorer is None:
            return None
        return make_judge(self._scorer, generator, self.settings.identity_threshold)

    def _show_warm_up(self, progress: WarmUp | None) -> None:
        """The warm-up's progress (None: nothing left to compile)."""
        self.warm_up = progress
        self._set(ModelState.READY if progress is None else ModelState.WARMING_UP, self.error)

    def _set(self, state: ModelState, error: str | None) -> None:
        self.state, self.error = state, error
        self._on_change()
