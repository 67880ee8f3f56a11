"""A fake generator for route tests: same interface as StoryboardGenerator, instant panels."""

import threading
import time

from PIL import Image

from local_image_generator import GenerationCancelled, PanelResult, PanelRun, StoryboardResult


class FakeGenerator:
    def __init__(self, step_delay: float = 0.0, fail_on: set[int] | None = None, crash: Exception | None = None):
        self.step_delay = step_delay
        self.fail_on = fail_on or set()
        self.crash = crash
        self.requests = []
        self.active = 0
        self.max_active = 0
        self.release = threading.Event()
        self.release.set()
        # pause_at = (panel index, step): after that step, set ``paused`` and wait for ``resume``.
        self.pause_at: tuple[int, int] | None = None
        self.paused, self.resume = threading.Event(), threading.Event()
        self.steps_run: list[tuple[int, int]] = []
        self._guard = threading.Lock()

    def describe(self):
        return {"model": "fake", "device": "cpu", "dtype": "float32"}

    def count_tokens(self, text):
        return len(text.split()) + 2

    def generate(self, request, on_progress=None, on_panel=None, on_reference=None, cancel=None, judge=None,
                 on_preview=None):
        with self._guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return self._generate(request, on_progress, on_panel, on_reference, cancel, on_preview)
        finally:
            with self._guard:
                self.active -= 1

    def _generate(self, request, on_progress, on_panel, on_reference, cancel, on_preview=None):
        self.requests.append(request)
        if self.crash:
            raise self.crash
        # Which references are portraits is the real request's rule; the fake draws them grey.
        portraits = request.portraits_to_draw()
        references = []
        for i, lock in enumerate(request.locks):
            reference = lock.reference
            if i in portraits:
                reference = Image.new("RGB", (16, 16), "gray")
                if on_reference:
                    on_reference(i, reference)
            references.append(reference)
        reference = references[0]
        kind = request.reference_kind(reference)
        results = []
        for job in request.panels:
            for step in range(1, request.num_steps + 1):
                self.release.wait(10)
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled()
                if self.step_delay:
                    time.sleep(self.step_delay)
                self.steps_run.append((job.index, step))
                if on_progress:
                    on_progress(job, step, request.num_steps)
                if on_preview:  # a panel forming, as the real generator shows it: a tiny picture a step
                    on_preview(job, step, request.num_steps, Image.new("RGB", (8, 8), (step * 20 % 256, 80, 120)))
                if self.pause_at == (job.index, step):
                    self.paused.set()
                    assert self.resume.wait(30), "the test never resumed the fake generator"
            if job.index in self.fail_on:
                result = PanelResult(job.index, job.prompt, job.negative_prompt, job.seed, job.caption, job.shot,
                                     status="failed", error="fake failure")
            else:
                image = Image.new("RGB", (request.width, request.height), (job.seed % 256, 80, 120))
                result = PanelResult(job.index, job.prompt, job.negative_prompt, job.seed, job.caption, job.shot,
                                     status="done", image=image, ran=_layout_run(job, request))
            results.append(result)
            if on_panel:
                on_panel(result)
        return StoryboardResult(results, reference, kind)


def _layout_run(job, request):
    """What ran, as the real generator reports a panel it drew with a layout's adapter; None otherwise."""
    if job.layout is None or job.init_image is not None:
        return None
    layout = job.layout
    return PanelRun("FakeScheduler", "Fake", request.num_steps, 1.0, None, None, layout={
        "kind": layout.kind, "adapter": layout.adapter, "strength": layout.strength, "factor": layout.factor,
        "adapter_steps": request.num_steps})


class Warming:
    """A compiled generator's warm-up as the worker sees it (plan_warm_up, warm_up_next),
    paced by a test: ``graphs`` to compile, the ``hold``-th held until ``go``; warm-ups and
    boards logged in order. Everything else is the wrapped generator's (``around``).

    warm_up_next runs on the worker's thread, where the worker catches what it raises; a
    held compile the test never lets ``go`` within ``patience`` seconds is therefore
    written into the log (never raised), and fails the test's check of the log."""

    NEVER_LET_GO = "held: the test never set go"

    def __init__(self, generator=None, graphs: int = 3, hold: int = 1, patience: float = 60.0):
        self.generator, self.graphs, self.hold, self.patience = generator, graphs, hold, patience
        self.pending, self.log = 0, []
        self.held, self.go = threading.Event(), threading.Event()

    def around(self, generator) -> "Warming":
        self.generator = generator
        return self

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def plan_warm_up(self):
        self.pending = self.graphs
        return self.pending

    @property
    def pending_warm_ups(self):
        return self.pending

    def warm_up_next(self):
        if not self.pending:
            return False
        self.log.append("compile")
        if self.log.count("compile") == self.hold:
            self.held.set()
            if not self.go.wait(self.patience):
                self.log.append(self.NEVER_LET_GO)
        self.pending -= 1
        return True

    def generate(self, request, **kwargs):
        self.log.append("board")
        return self.generator.generate(request, **kwargs)
