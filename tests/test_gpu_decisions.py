"""The CUDA and MPS decisions, proved on the CPU with the tiny models: the
memory format per device, the first panel drawn alone, CPU offload, the compiled UNet's
mode, caches and warm-up. Their speed is measured by bench/gpu.sh on a GPU."""


import numpy as np
import pytest
import torch

from config import load_settings
from local_image_generator import StoryboardGenerator, channels_last
from model_loading import place

from test_generator import request


@pytest.mark.parametrize("device,values,expected", [
    ("mps", {}, True),  # asked for on a Mac
    ("cuda", {}, False),  # measured slower on an H100 (76 vs 136-149 ms a step)
    ("cuda", {"cuda_channels_last": True}, True),
    ("mps", {"enable_channels_last": False}, False),
    ("cpu", {"cuda_channels_last": True}, False),
])
def test_channels_last_per_device(device, values, expected):
    assert channels_last(load_settings({}, values), device) is expected


def test_a_loaded_cpu_unet_stays_contiguous(tiny_generator):
    weight = next(p for p in tiny_generator.pipe.unet.parameters() if p.dim() == 4)
    assert weight.is_contiguous()


def test_with_batches_the_first_panel_is_drawn_alone_then_the_rest_batched(tiny_settings_factory, monkeypatch):
    generator = StoryboardGenerator.load(tiny_settings_factory(max_batch=4))
    monkeypatch.setattr(generator, "batch_size", lambda width=0, height=0: 4)  # as CUDA with room for 4
    calls = []
    original = generator._draw_batch
    monkeypatch.setattr(generator, "_draw_batch", lambda batch, run: calls.append(len(batch)) or original(batch, run))
    delivered = []
    result = generator.generate(request(6, steps=1),
                                on_panel=lambda result: delivered.append((result.index, list(calls))))
    assert calls == [1, 4, 1]
    assert result.timings["panels_per_call"] == 4  # kept with the step time: the look's estimate reads it
    assert delivered[0] == (1, [1])  # panel 1 was on the page before the batch of four was drawn


def test_the_first_panel_can_be_batched_like_the_rest(tiny_settings_factory, monkeypatch):
    generator = StoryboardGenerator.load(tiny_settings_factory(max_batch=4, first_panel_alone=False))
    monkeypatch.setattr(generator, "batch_size", lambda width=0, height=0: 4)
    assert [len(b) for b in generator._batches(request(6).panels, 48, 48)] == [4, 2]


class RecordingPipe:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append(name) or self


@pytest.mark.parametrize("offload,device,expected", [
    ("off", "cuda", ["to"]), ("model", "cuda", ["enable_model_cpu_offload"]),
    ("sequential", "cuda", ["enable_sequential_cpu_offload"]), ("model", "mps", ["to"]), ("model", "cpu", ["to"]),
])
def test_cpu_offload_only_on_cuda_and_instead_of_moving_the_pipeline(offload, device, expected):
    pipe = RecordingPipe()
    place(pipe, load_settings({}, {"cpu_offload": offload}), device)
    assert pipe.calls == expected


@pytest.fixture(autouse=True)
def keep_dynamo_config():
    """_compile sets dynamo's process-wide options: give them back after each test."""
    config = torch._dynamo.config
    kept = {name: getattr(config, name) for name in ("automatic_dynamic_shapes", "recompile_limit")}
    yield
    for name, value in kept.items():
        setattr(config, name, value)
    torch._dynamo.reset()  # no compiled graph keeps a test's generator alive


@pytest.fixture
def compiled(tiny_settings_factory, monkeypatch, tmp_path):
    """A tiny generator "compiled" as on CUDA: torch.compile recorded, the module returned as is."""
    seen = {}

    def fake_compile(module, **kwargs):
        seen.update(kwargs)
        return module

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(torch, "compile", fake_compile)
    generator = StoryboardGenerator.load(tiny_settings_factory(data_dir=str(tmp_path), compile_unet=True))
    generator._compile()
    return generator, seen, tmp_path


def test_the_unet_compiles_with_static_shapes_in_the_chosen_mode_and_caches_in_the_data_dir(compiled):
    import os

    generator, seen, data = compiled
    assert seen == {"mode": "reduce-overhead", "fullgraph": False, "dynamic": None}
    assert torch._dynamo.config.automatic_dynamic_shapes is False  # sizes static; the batch marked per call
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(data / "compile-cache" / "inductor")


def test_warm_up_draws_every_size_once_and_saves_the_kernels_for_the_next_start(compiled, monkeypatch):
    generator, _, data = compiled
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"kernels", None))
    sizes, progress = [], []
    original = generator.generate
    monkeypatch.setattr(generator, "generate",
                        lambda req, **kw: sizes.append((req.width, req.height, req.num_steps)) or original(req, **kw))
    generator.warm_up(lambda done, total: progress.append((done, total)))
    expected = sorted({generator.settings.size_for(a) for a in ("1:1", "16:9", "9:16", "4:3", "3:4")})
    assert sizes == [(w, h, 2) for w, h in expected]
    assert progress == [(done, len(expected)) for done in range(len(expected) + 1)]  # 0 first: the page says "0 of 5"
    assert (data / "compile-cache" / "artifacts.bin").read_bytes() == b"kernels"


class CountingBackend:
    """A torch.compile backend that runs the graph eagerly and counts what dynamo compiled."""

    def __init__(self):
        self.graphs = []
        self.runs = 0  # calls of compiled graphs

    def __call__(self, graph, inputs):
        self.graphs.append([tuple(x.shape) for x in inputs if isinstance(x, torch.Tensor)][:1])

        def run(*args):
            self.runs += 1
            return graph.forward(*args)

        return run


def test_after_warm_up_no_board_recompiles_the_unet(tiny_settings_factory, monkeypatch, tmp_path):
    # Real dynamo on the tiny UNet; only the backend differs from CUDA's (no kernels built).
    # With the CFG cutoff a board runs every batch shape a board can: 2n with guidance, n after.
    cutoff = 0.5
    torch._dynamo.reset()
    import local_image_generator

    monkeypatch.setattr(local_image_generator, "ASPECTS", ("1:1", "16:9"))  # two sizes are enough to see
    generator = StoryboardGenerator.load(tiny_settings_factory(data_dir=str(tmp_path), cfg_cutoff=cutoff))
    sizes = [generator.settings.size_for(aspect) for aspect in local_image_generator.ASPECTS]
    monkeypatch.setattr(generator, "batch_size", lambda width=0, height=0: 4)  # as CUDA with room for 4
    backend = CountingBackend()
    generator._compile(backend=backend)
    generator.warm_up()
    warmed, runs = len(backend.graphs), backend.runs
    assert warmed >= len(sizes)
    for width, height in sizes:  # batches 1, 4, 1: CFG 2, 8, 2 (after the cutoff 1, 4, 1)
        result = generator.generate(request(6, steps=4, width=width, height=height))
        assert [p.status for p in result.panels] == ["done"] * 6
    assert backend.graphs[warmed:] == []
    assert backend.runs - runs == 2 * 3 * 4  # every UNet call of both boards ran a compiled graph


@pytest.mark.parametrize("look", [False, True])  # with the consistent look: its own graphs, warmed the same way
def test_a_shape_not_compiled_yet_is_drawn_eagerly_and_compiled_when_asked(tiny_settings_factory, monkeypatch,
                                                                           tmp_path, look):
    import dataclasses

    from test_generator import cast_request

    torch._dynamo.reset()
    generator = StoryboardGenerator.load(tiny_settings_factory(data_dir=str(tmp_path)))
    monkeypatch.setattr(generator, "batch_size", lambda width=0, height=0: 4)
    backend = CountingBackend()
    generator._compile(backend=backend)
    assert generator.plan_warm_up() == len({generator.settings.size_for(a) for a in ("1:1", "16:9", "9:16",
                                                                                      "4:3", "3:4")})
    generator.graphs.waiting.clear()  # as if the worker had not got to them yet
    board = dataclasses.replace(cast_request([(0, 1), (0, 1), (1,)]), consistent_look=look)  # 80x48: two, then one
    eager = generator.generate(board)
    assert backend.graphs == [] and backend.runs == 0  # nothing compiled while the board waited
    assert list(generator.graphs.waiting) == [(80, 48, 2, None, look), (80, 48, 1, None, look)]
    while generator.warm_up_next():  # what the worker does when it has nothing to draw
        pass
    compiled = len(backend.graphs)
    assert compiled > 0 and generator.pending_warm_ups == 0
    again = generator.generate(board)
    assert len(backend.graphs) == compiled and backend.runs > 0
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(eager.panels, again.panels))


def test_a_restart_loads_the_saved_kernels(compiled, monkeypatch):
    generator, _, data = compiled
    (data / "compile-cache" / "artifacts.bin").write_bytes(b"kernels")
    loaded = []
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", loaded.append)
    generator._compile()
    assert loaded == [b"kernels"]


def test_without_compile_there_is_nothing_to_warm_up(tiny_generator):
    assert tiny_generator.warm_up() == 0.0


def test_the_worker_compiles_when_idle_and_a_board_waits_for_one_graph_only(tmp_path):
    from app import create_app
    from studio import studio_of
    from fakes import FakeGenerator, Warming
    from helpers import wait_for, wait_until

    generator = Warming(FakeGenerator())
    settings = load_settings({}, {"data_dir": str(tmp_path), "model": "tiny", "identity_scoring": False,
                                  "preload": True})
    app = create_app(settings, load_generator=lambda: generator)
    client = app.test_client()
    try:
        assert generator.held.wait(30)
        health = client.get("/api/health").get_json()
        assert health["model"] == "warming_up"
        assert health["warm_up"] == {"done": 0, "of": 3, "eta_s": None}
        board = client.post("/api/storyboards", json={"story": "One.", "identity_lock": False}).get_json()
        generator.go.set()  # the first graph is done: the board is drawn before the other two
        assert wait_for(client, board["id"])["status"] == "done"
        wait_until(lambda: client.get("/api/health").get_json()["model"] == "ready", "the warm-up never ended")
        assert generator.log == ["compile", "board", "compile", "compile"]
        assert client.get("/api/health").get_json()["warm_up"] is None
    finally:
        generator.go.set()
        studio_of(app).backend.stop()


def test_the_warm_up_eta_is_the_pace_so_far_times_what_is_left():
    from backend import WarmUp, WarmUpTracker
    from fakes import FakeGenerator, Warming

    now = [100.0]
    generator = Warming(FakeGenerator(), graphs=5, hold=0)
    generator.plan_warm_up()
    original = generator.warm_up_next
    generator.warm_up_next = lambda: now.__setitem__(0, now[0] + 30.0) or original()  # 30 s a graph
    tracker = WarmUpTracker(clock=lambda: now[0])
    assert tracker.progress(generator) == WarmUp(0, 5, None)
    assert tracker.step(generator) and tracker.progress(generator) == WarmUp(1, 5, 120)
    assert tracker.step(generator) and tracker.progress(generator) == WarmUp(2, 5, 90)
    while tracker.step(generator):
        pass
    assert tracker.progress(generator) is None and generator.log == ["compile"] * 5


def test_in_half_precision_the_fp16_fix_vae_decodes_without_the_upcast(tiny_settings_factory):
    generator = StoryboardGenerator.load(tiny_settings_factory(precision="fp16"))
    vae = generator.pipe.vae
    assert vae.dtype == torch.float16 and vae.config.force_upcast is False
    assert "sdxl-vae-fp16-fix" in vae.config._name_or_path
    result = generator.generate(request(1, steps=1))
    assert result.panels[0].status == "done" and not result.panels[0].vae_fp32_retry


def test_in_full_precision_sdxls_own_vae_is_kept(tiny_generator):
    assert "stable-diffusion-xl-base-1.0" in tiny_generator.pipe.vae.config._name_or_path


def test_without_the_fp16_fix_vae_auto_falls_back_to_sdxls_own(tiny_settings_factory, hf_cache, tmp_path, caplog):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(hf_cache, cache)
    shutil.rmtree(cache / "models--madebyollin--sdxl-vae-fp16-fix")
    caplog.set_level("INFO", logger="model_loading")
    generator = StoryboardGenerator.load(tiny_settings_factory(precision="fp16", hf_cache_dir=str(cache)))
    assert "stable-diffusion-xl-base-1.0" in generator.pipe.vae.config._name_or_path
    assert "fp16-fix VAE is not available" in caplog.text


def test_a_vae_asked_for_by_name_must_load(tiny_settings_factory, hf_cache, tmp_path):
    from local_image_generator import ModelNotAvailable

    with pytest.raises(ModelNotAvailable, match="STORYBOARD_VAE_MODEL"):
        StoryboardGenerator.load(tiny_settings_factory(vae_model="someone/missing-vae"))
