"""The measured step time (step_time.py): kept across restarts, turned into each mode's time a
panel, and the progress bar's estimate of the time left (drawing.Progress)."""

import threading

import pytest

import step_time
from config import PRESETS, load_settings
from drawing import Progress
from fakes import FakeGenerator
from generator_host import GeneratorHost
from test_drawing import spec


@pytest.fixture
def settings(tmp_path):
    return load_settings({}, {"data_dir": str(tmp_path), "model": "tiny", "identity_scoring": False})


class Sink:
    """Keeps the progress reported, drops every other fact."""

    def __init__(self):
        self.reported = []

    def __getattr__(self, name):
        return self.reported.append if name == "progress" else (lambda *args: None)


class Job:
    """A panel or portrait as the generator names it to the progress callback."""

    def __init__(self, index):
        self.index, self.portrait_of = index, None


# --- the progress bar's time left ----------------------------------------------------------


def progress(clock, seconds_per_step=None):
    sink = Sink()
    return sink, Progress(sink, {1: 1, 2: 2}, 2, {}, seconds_per_step, clock=lambda: clock[0])


def test_the_first_estimate_is_the_measured_step_time_not_the_slow_first_step():
    clock = [5.0]  # the first step came after 5 s of mode switch and encoding
    sink, tracker = progress(clock, seconds_per_step=0.5)
    tracker.step(Job(1), 1, 4)
    assert sink.reported[-1]["eta_s"] == 3.5  # 7 steps left at 0.5 s (it said 35 s)


def test_from_the_second_step_on_the_jobs_own_pace_counts():
    clock = [5.0]
    sink, tracker = progress(clock, seconds_per_step=2.0)
    tracker.step(Job(1), 1, 4)
    clock[0] = 5.25
    tracker.step(Job(1), 2, 4)
    assert sink.reported[-1]["eta_s"] == 1.5  # 6 steps left at 0.25 s


def test_with_nothing_measured_yet_no_time_is_guessed():
    sink, tracker = progress([5.0])
    tracker.step(Job(1), 1, 4)
    assert sink.reported[-1]["eta_s"] is None


# --- kept in the data dir ------------------------------------------------------------------


def test_a_measurement_is_read_back_for_its_model_only(settings):
    fast = PRESETS["fast"]
    written = step_time.record(settings, fast, [fast.passes_per_panel * 0.2] * 3)
    assert written.seconds_per_pass == pytest.approx(0.2)
    assert step_time.read(settings) == written
    assert step_time.seconds_per_panel(PRESETS["draft"], written) == pytest.approx(
        0.2 * PRESETS["draft"].passes_per_panel)
    other = load_settings({}, {"data_dir": settings.data_dir, "model": "sdxl"})
    assert step_time.read(other) is None


def test_an_unreadable_file_is_no_measurement(settings):
    (settings.data_path / step_time.FILE_NAME).write_text("{not json")
    assert step_time.read(settings) is None


class Timed(FakeGenerator):
    """Every panel took 2 s."""

    def _generate(self, *args):
        result = super()._generate(*args)
        for panel in result.panels:
            panel.seconds = 2.0
        return result


def test_the_worker_keeps_each_boards_step_time_and_a_restart_starts_from_it(settings):
    job = spec(preset=PRESETS["fast"])
    GeneratorHost(settings, Timed).run(1, lambda: job, Sink(), threading.Event())
    measured = step_time.read(settings)
    assert measured.seconds_per_pass == pytest.approx(2.0 / PRESETS["fast"].passes_per_panel)

    sink = Sink()  # a restart: a new host, the same data dir
    GeneratorHost(settings, Timed).run(2, lambda: job, sink, threading.Event())
    steps = 2 * PRESETS["fast"].steps
    assert sink.reported[0]["eta_s"] == round((steps - 1) * 2.0 / PRESETS["fast"].steps, 1)


def test_presets_serve_the_estimate_once_measured(settings, make_app):
    app = make_app(data_dir=settings.data_path)
    before = app.test_client().get("/api/presets").get_json()
    assert before["step_time"] is None and {p["seconds_per_panel"] for p in before["presets"]} == {None}
    step_time.record(settings, PRESETS["draft"], [PRESETS["draft"].passes_per_panel * 0.1])
    after = app.test_client().get("/api/presets").get_json()
    assert after["step_time"]["seconds_per_pass"] == pytest.approx(0.1)
    served = {p["name"]: p["seconds_per_panel"] for p in after["presets"]}
    assert served["draft"] == pytest.approx(0.1 * PRESETS["draft"].passes_per_panel, abs=1e-3)
    assert served["fast"] == pytest.approx(0.1 * PRESETS["fast"].passes_per_panel, abs=1e-3)


def test_a_refine_measures_nothing_it_runs_a_share_of_its_modes_steps(settings):
    import dataclasses

    from helpers import png_bytes

    base = spec(preset=PRESETS["fast"])
    refine = dataclasses.replace(base, strength=0.5, panels=tuple(
        dataclasses.replace(panel, source_png=png_bytes((48, 48))) for panel in base.panels))
    GeneratorHost(settings, Timed).run(1, lambda: refine, Sink(), threading.Event())
    assert step_time.read(settings) is None


class Looked(Timed):
    """Every panel took 2 s and was drawn with the consistent look, as the generator reports it."""

    def _generate(self, *args):
        from local_image_generator import PanelRun

        result = super()._generate(*args)
        for panel in result.panels:
            panel.ran = PanelRun("Fake", "Fake", 12, 6.5, 0.5, None, look_references=(1,), look_sampling_rate=0.5)
        return result


def test_a_board_drawn_with_the_consistent_look_measures_nothing_its_reference_rows_are_extra_passes(settings):
    GeneratorHost(settings, Looked).run(1, lambda: spec(preset=PRESETS["fast"]), Sink(), threading.Event())
    assert step_time.read(settings) is None  # 2 s a panel would have read as a pass half again slower


class Batched(Timed):
    """The generator drew the board three panels a call."""

    def _generate(self, *args):
        result = super()._generate(*args)
        result.timings["panels_per_call"] = 3
        return result


def test_the_panels_a_call_are_kept_with_the_step_time_and_older_files_read_as_one(settings, make_app):
    import json

    GeneratorHost(settings, Batched).run(1, lambda: spec(preset=PRESETS["fast"]), Sink(), threading.Event())
    assert step_time.read(settings).panels_per_call == 3
    served = make_app(data_dir=settings.data_path).test_client().get("/api/presets").get_json()
    assert served["step_time"]["panels_per_call"] == 3
    path = settings.data_path / step_time.FILE_NAME
    older = {k: v for k, v in json.loads(path.read_text()).items() if k != "panels_per_call"}
    path.write_text(json.dumps(older))
    assert step_time.read(settings).panels_per_call == 1


def test_each_mode_says_what_the_consistent_look_adds_a_call_and_the_draft_adds_nothing(make_app, tmp_path):
    served = make_app(data_dir=tmp_path).test_client().get("/api/presets").get_json()
    look = {p["name"]: p["look_passes"] for p in served["presets"]}
    assert look["draft"] == 0  # one step: drawn without it
    assert look["fast"] == PRESETS["fast"].unet_passes == 24  # a reference row at each of 12 CFG steps
    assert look["lightning"] == PRESETS["lightning"].steps  # no CFG: one row a step
