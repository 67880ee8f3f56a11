"""The generation engine on tiny random SDXL + IP-Adapter models, through the real loading calls."""

import threading

import numpy as np
import pytest
from PIL import Image

from config import MAX_FRAMES, PRESETS, load_settings
from errors import InputError
from local_image_generator import (
    GenerationCancelled,
    ModelNotAvailable,
    PanelJob,
    StoryboardGenerator,
    StoryboardRequest,
)

FAST = PRESETS["fast"]


def panels(count=3, seed=100):
    return tuple(PanelJob(i, f"a girl with red hair, scene {i}", "blurry", seed + i - 1, f"scene {i}")
                 for i in range(1, count + 1))


def request(count=3, lock=True, reference="red", steps=2, seed=100, portrait=False, **kw):
    ref = Image.new("RGB", (64, 64), reference) if reference else None
    port = PanelJob(None, "portrait of a girl with red hair", "blurry", seed) if portrait else None
    return StoryboardRequest(panels(count, seed), kw.pop("width", 48), kw.pop("height", 48), FAST,
                             identity_lock=lock, reference=ref, portrait=port, steps=steps, **kw)


def pixels(result):
    return [p.pixels.astype(np.float64) for p in result.panels]


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(pixels(a), pixels(b)))


def test_default_hub_ids_load_from_the_cache(hf_cache, tmp_path):
    # No model, cache or source settings: the real hub ids, resolved through HF_HUB_CACHE.
    settings = load_settings({}, {"data_dir": str(tmp_path)})
    generator = StoryboardGenerator.load(settings)
    assert settings.sdxl_model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert generator.pipe.image_encoder is not None  # the plus-face adapter's ViT-H encoder


def test_missing_weights_say_what_to_do(tmp_path):
    settings = load_settings({}, {"hf_cache_dir": str(tmp_path), "offline": "true", "data_dir": str(tmp_path)})
    with pytest.raises(ModelNotAvailable) as caught:
        StoryboardGenerator.load(settings)
    message = str(caught.value)
    assert "network" in message and "local folder" in message and "make demo" in message
    assert "…" not in message and message.endswith(".)")  # the library's words in whole sentences


def test_a_librarys_error_is_kept_in_whole_sentences():
    from model_loading import _first_sentences

    words = "First sentence is here. " + "Second one says what to do about it. " * 3 + "Never this."
    assert _first_sentences(words, limit=70) == "First sentence is here. Second one says what to do about it."
    assert _first_sentences("One very long sentence " * 40, limit=50, most=600).endswith("…")
    assert _first_sentences("line one.\nline two.") == "line one."


def test_a_mistyped_local_folder_is_named(tmp_path):
    settings = load_settings({}, {"sdxl_model": str(tmp_path / "nope"), "data_dir": str(tmp_path)})
    with pytest.raises(ModelNotAvailable, match="no such folder"):
        StoryboardGenerator.load(settings)


def test_uploaded_reference_is_used_and_encoded_once(tiny_generator):
    before = tiny_generator.image_encoder_calls
    result = tiny_generator.generate(request(count=3))
    assert result.reference_kind == "uploaded"
    assert tiny_generator.image_encoder_calls == before + 1
    assert [p.status for p in result.panels] == ["done"] * 3


def test_the_reference_changes_the_panels(tiny_generator):
    red = tiny_generator.generate(request(count=1, reference="red"))
    blue = tiny_generator.generate(request(count=1, reference="blue"))
    assert max_diff(red, blue) > 0


def test_without_a_reference_a_portrait_is_drawn_and_returned(tiny_generator):
    seen = []
    result = tiny_generator.generate(request(count=2, reference=None, portrait=True), on_reference=lambda character, image: seen.append((character, image)))
    assert result.reference_kind == "generated"
    assert seen == [(0, result.reference)] and result.reference.size == (64, 64)


def test_lock_off_does_no_ip_adapter_work(tiny_settings_factory):
    # A generator of its own: the shared one may have been switched to a LoRA and back by an
    # earlier test, which leaves its weights a rounding (~1e-6) from a fresh one's.
    adapted = StoryboardGenerator.load(tiny_settings_factory())
    plain = StoryboardGenerator.load(tiny_settings_factory(use_identity_lock=False))
    before = adapted.image_encoder_calls
    locked_off = adapted.generate(request(lock=False, reference=None))
    assert adapted.image_encoder_calls == before
    assert plain._ip_processors is None  # this one never loaded the adapter
    assert max_diff(locked_off, plain.generate(request(lock=False, reference=None))) == 0


def test_attention_slicing_keeps_the_identity_lock(tiny_generator, tiny_settings_factory):
    sliced = StoryboardGenerator.load(tiny_settings_factory(force_attention_slicing=True))
    sliced.generate(request(lock=False, reference=None))
    assert sliced.attention_sliced  # slicing is used while the lock is off
    locked = sliced.generate(request(lock=True))
    assert not sliced.attention_sliced  # ... and the IP-Adapter processors while it is on
    assert max_diff(locked, tiny_generator.generate(request(lock=True))) < 1e-4


def test_same_inputs_and_seed_give_the_same_images(tiny_generator):
    assert max_diff(tiny_generator.generate(request()), tiny_generator.generate(request())) == 0


def test_another_seed_gives_another_image(tiny_generator):
    assert max_diff(tiny_generator.generate(request(seed=1)), tiny_generator.generate(request(seed=2))) > 0


def test_batched_equals_one_by_one(tiny_settings_factory):
    batched = StoryboardGenerator.load(tiny_settings_factory(batch_panels="on"))
    single = StoryboardGenerator.load(tiny_settings_factory(batch_panels="off"))
    assert batched.batch_size() == 8 and single.batch_size() == 1
    assert max_diff(batched.generate(request(count=4)), single.generate(request(count=4))) < 1e-4


def test_shared_conditioning_is_encoded_once_per_board(tiny_generator):
    text, image = tiny_generator.text_encoder_calls, tiny_generator.image_encoder_calls
    tiny_generator.generate(request(count=6))
    # One call for the six panel prompts, one for the shared negative prompt.
    assert tiny_generator.text_encoder_calls - text == 2
    assert tiny_generator.image_encoder_calls - image == 1


def test_cancel_stops_mid_storyboard(tiny_generator):
    cancel, finished = threading.Event(), []

    def progress(job, step, steps):
        if job.index == 2 and step == 1:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        tiny_generator.generate(request(count=4), on_progress=progress, on_panel=finished.append, cancel=cancel)
    assert [p.index for p in finished] == [1]


def test_progress_reports_panel_step_and_total(tiny_generator):
    seen = []
    tiny_generator.generate(request(count=2, steps=3), on_progress=lambda job, *a: seen.append((job.index, *a)))
    assert seen == [(1, 1, 3), (1, 2, 3), (1, 3, 3), (2, 1, 3), (2, 2, 3), (2, 3, 3)]


def _poison_decode(monkeypatch, generator, times):
    import torch

    real, calls = generator.pipe.vae.decode, []

    def decode(latents, return_dict=True):
        calls.append(1)
        out = real(latents, return_dict=return_dict)
        if len(calls) <= times:
            return (torch.full_like(out[0], float("nan")),)
        return out

    monkeypatch.setattr(generator.pipe.vae, "decode", decode)


def test_a_nan_panel_is_decoded_again_in_fp32(tiny_generator, monkeypatch):
    _poison_decode(monkeypatch, tiny_generator, times=1)
    result = tiny_generator.generate(request(count=1))
    assert result.panels[0].status == "done" and result.panels[0].vae_fp32_retry


def test_a_panel_still_nan_is_reported_failed_not_saved(tiny_generator, monkeypatch):
    _poison_decode(monkeypatch, tiny_generator, times=2)
    result = tiny_generator.generate(request(count=1))
    assert result.panels[0].status == "failed" and result.panels[0].image is None
    assert "NaN" in result.panels[0].error


def test_out_of_memory_fails_the_panel_and_frees_memory(tiny_generator, monkeypatch):
    import torch

    real = tiny_generator._draw_batch

    def draw(batch, run):
        if batch[0].index == 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(batch, run)

    monkeypatch.setattr(tiny_generator, "_draw_batch", draw)
    result = tiny_generator.generate(request(count=3))
    assert [p.status for p in result.panels] == ["done", "failed", "done"]
    assert "faster speed mode" in result.panels[1].error


def test_drifted_panels_are_redrawn_and_the_closest_kept(tiny_generator, tiny_settings_factory):
    distances = iter([0.9, 0.7, 0.5])
    judge = lambda ref, image: {"status": "drift" if (d := next(distances)) > 0.6 else "match", "distance": d}
    result = tiny_generator.generate(request(count=1), judge=judge)
    panel = result.panels[0]
    assert panel.attempts == 3 and panel.identity["distance"] == 0.5
    assert panel.seed == 100 + 2 * 8  # the second retry's seed


def test_token_counts_use_the_pipeline_tokenizer(tiny_generator):
    assert tiny_generator.count_tokens("hello world") == 4  # start + 2 words + end


@pytest.mark.parametrize("field,kw", [("width", {"width": 50}), ("steps", {"steps": 0})])
def test_bad_requests_name_the_field(tiny_generator, field, kw):
    bad = request(**kw) if field != "steps" else StoryboardRequest(panels(1), 48, 48, FAST, False, steps=-1)
    with pytest.raises(InputError) as caught:
        tiny_generator.generate(bad)
    assert caught.value.field == field


def test_cfg_cutoff_halves_the_unet_batch_after_the_cutoff(tiny_settings_factory):
    generator = StoryboardGenerator.load(tiny_settings_factory(cfg_cutoff=0.5))
    batches = []
    hook = generator.pipe.unet.register_forward_pre_hook(lambda m, args, kwargs: batches.append(args[0].shape[0]),
                                                         with_kwargs=True)
    result = generator.generate(request(count=1, steps=4))
    hook.remove()
    assert batches == [2, 2, 1, 1] and result.panels[0].status == "done"


def test_cfg_cutoff_at_one_changes_nothing(tiny_generator, tiny_settings_factory):
    full = StoryboardGenerator.load(tiny_settings_factory(cfg_cutoff=1.0))
    assert max_diff(full.generate(request(count=1)), tiny_generator.generate(request(count=1))) == 0


def test_cuda_batches_are_sized_to_free_memory(tiny_settings_factory, monkeypatch):
    import torch

    generator = StoryboardGenerator.load(tiny_settings_factory())
    monkeypatch.setattr(generator, "device", "cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (8 * 2**30, 80 * 2**30))
    # 8 GiB free, 80% usable, ~1.5 GiB per 1024x1024 panel: 4 panels at once.
    assert generator.batch_size(1024, 1024) == 4
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (2**30, 80 * 2**30))
    assert generator.batch_size(1024, 1024) == 1


def test_compiled_mode_changes_the_ip_scale_in_place(tiny_generator, tiny_settings_factory):
    # With compile_unet the scale is a shared tensor (no recompile per scale); on CPU nothing
    # is compiled, so the images must equal the plain float path's.
    shared = StoryboardGenerator.load(tiny_settings_factory(compile_unet=True))
    processors = dict(shared.pipe.unet.attn_processors)
    assert max_diff(shared.generate(request(count=1)), tiny_generator.generate(request(count=1))) < 1e-6
    quality = request(count=1)
    quality = StoryboardRequest(quality.panels, 48, 48, PRESETS["quality"], True, quality.reference, steps=2)
    shared.generate(quality)
    assert float(shared._ip_scale) == pytest.approx(0.80) and dict(shared.pipe.unet.attn_processors) == processors


def test_self_attention_stays_on_sdpa_with_the_adapter(tiny_generator):
    def kinds():  # self-attention (and the resampler's) -> SDPA; cross-attention -> folded, with image weights?
        # (the up blocks' self-attention is SDPA inside the consistent look's wrapper: consistent_look.py)
        return {(".attn2." in name, type(getattr(p, "inner", p)).__name__, len(getattr(p, "to_k_ip", ())))
                for name, p in tiny_generator.pipe.unet.attn_processors.items()}

    tiny_generator.generate(request(count=1, lock=True))
    assert kinds() == {(False, "AttnProcessor2_0", 0), (True, "FoldedAttnProcessor", 1)}
    tiny_generator.generate(request(count=1, lock=False, reference=None))
    assert kinds() == {(False, "AttnProcessor2_0", 0), (True, "FoldedAttnProcessor", 0)}


def test_on_mps_the_plain_processors_are_sliced_and_autocast_is_fp16(tiny_settings_factory, monkeypatch):
    # No Apple GPU here: check the MPS decisions themselves on the tiny pipeline.
    import torch

    generator = StoryboardGenerator.load(tiny_settings_factory())
    monkeypatch.setattr(generator, "device", "mps")
    generator._prepare_attention()
    # (the up blocks' self-attention ones inside the consistent look's wrapper, used while it is off)
    assert all("Sliced" in type(getattr(p, "inner", p)).__name__ for p in generator._plain_processors.values())
    autocast = generator._autocast()
    assert isinstance(autocast, torch.autocast) and autocast.fast_dtype == torch.float16


def test_on_cuda_attention_is_not_sliced(tiny_settings_factory, monkeypatch):
    generator = StoryboardGenerator.load(tiny_settings_factory())
    monkeypatch.setattr(generator, "device", "cuda")
    generator._prepare_attention()
    assert not any("Sliced" in type(p).__name__ for p in generator._plain_processors.values())


@pytest.mark.parametrize("device,precision,expected", [
    ("cpu", "auto", "float32"), ("mps", "auto", "float16"), ("cuda", "auto", "float16"), ("cuda", "bf16", "bfloat16"),
])
def test_precision_follows_the_device(device, precision, expected):
    from local_image_generator import resolve_dtype

    assert str(resolve_dtype(precision, device)) == f"torch.{expected}"


def test_half_precision_prefers_fp16_files_and_falls_back(tiny_settings_factory, monkeypatch):
    from diffusers import StableDiffusionXLPipeline

    asked = []
    real = StableDiffusionXLPipeline.from_pretrained.__func__

    def spy(cls, source, **kwargs):
        asked.append(kwargs.get("variant"))
        return real(cls, source, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_pretrained", classmethod(spy))
    generator = StoryboardGenerator.load(tiny_settings_factory(precision="fp16", use_identity_lock=False))
    # The tiny repo has no fp16 files, like a local folder without them: loaded as it is.
    assert asked == ["fp16", None] and str(generator.pipe.unet.dtype) == "torch.float16"


def test_loading_gives_torch_the_configured_cpu_threads(tiny_settings_factory):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        StoryboardGenerator.load(tiny_settings_factory())  # tiny: auto = 1 thread
        assert torch.get_num_threads() == 1
        StoryboardGenerator.load(tiny_settings_factory(cpu_threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("library", ["diffusers", "transformers"])
def test_known_harmless_library_warnings_are_dropped_and_others_kept(library):
    import logging

    from local_image_generator import quiet_library_logs

    quiet_library_logs()
    handlers = logging.getLogger(library).handlers
    assert handlers

    def shown(message: str) -> bool:
        record = logging.LogRecord(f"{library}.x", logging.WARNING, __file__, 1, message, None, None)
        return all(handler.filter(record) for handler in handlers)

    assert not shown("`CLIPImageProcessor` requires torchvision (not installed); falling back")
    assert not shown("There are modules in UNet2DConditionModel that should be kept in float32: []. Casting")
    assert shown("There are modules in UNet2DConditionModel that should be kept in float32: ['norm']")
    assert shown("a warning worth reading")


def test_the_log_says_the_tiny_models_were_loaded(tiny_settings_factory, caplog):
    caplog.set_level("INFO", logger="local_image_generator")
    StoryboardGenerator.load(tiny_settings_factory())
    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded")]
    assert loaded and "tiny random SDXL" in loaded[0] and "stabilityai" not in loaded[0]


# --- A cast: one IP-Adapter, several references, region masks ------------------------------------

from local_image_generator import CharacterLock  # noqa: E402


def cast_request(casts, references=("red", "blue"), preset=FAST, seed=100, portraits=False, lock=True):
    """Panels with the given casts (places in the references), locked with flat-colour references."""
    jobs = tuple(PanelJob(i, f"two people, scene {i}", "blurry", seed + i - 1, f"scene {i}", cast=tuple(cast))
                 for i, cast in enumerate(casts, start=1))
    locks = tuple(CharacterLock(portrait=PanelJob(None, f"portrait {k}", "blurry", seed + k)) if portraits
                  else CharacterLock(Image.new("RGB", (64, 64), colour)) for k, colour in enumerate(references, 1))
    return StoryboardRequest(jobs, 80, 48, preset, identity_lock=lock, steps=2, characters=locks)


def unet_calls(generator):
    """Every UNet call's batch size and IP-Adapter masks, recorded by a hook (removed by the caller)."""
    calls = []

    def record(module, args, kwargs):
        cross = kwargs.get("cross_attention_kwargs") or {}
        calls.append((args[0].shape[0], cross.get("ip_adapter_masks"), kwargs.get("added_cond_kwargs", {})))

    return calls, generator.pipe.unet.register_forward_pre_hook(record, with_kwargs=True)


def test_a_panel_with_two_characters_goes_through_the_masks_path(tiny_generator):
    calls, hook = unet_calls(tiny_generator)
    try:
        result = tiny_generator.generate(cast_request([(0, 1)]))
    finally:
        hook.remove()
    masks = calls[0][1]
    assert result.panels[0].status == "done" and len(masks) == 1 and tuple(masks[0].shape) == (1, 2, 48, 80)
    assert masks[0][0, 0, :, :40].min() == 1 and masks[0][0, 0, :, 40:].max() == 0  # character 1: the left half
    assert masks[0][0, 1, :, 40:].min() == 1 and masks[0][0, 1, :, :40].max() == 0
    image_embeds = calls[0][2]["image_embeds"][0]
    assert image_embeds.shape[:2] == (2, 2)  # [negative; positive] x two reference images, one adapter


def test_two_copies_of_one_reference_in_complementary_regions_draw_what_one_reference_draws(tiny_generator):
    # The masks split the picture exactly: the same face twice is that face everywhere.
    twice = tiny_generator.generate(cast_request([(0, 1)], references=("red", "red")))
    once = tiny_generator.generate(cast_request([(0,)], references=("red",)))
    assert max_diff(twice, once) < 1e-4


def test_the_references_go_to_their_own_regions(tiny_generator):
    red_blue = tiny_generator.generate(cast_request([(0, 1)]))
    blue_red = tiny_generator.generate(cast_request([(1, 0)]))
    assert max_diff(red_blue, blue_red) > 1e-3


def test_panels_with_different_casts_never_share_a_call_and_never_mix(tiny_settings_factory):
    casts = [(0,), (1,), (0, 1), (0,), (1,), (0, 1)]
    batched = StoryboardGenerator.load(tiny_settings_factory(batch_panels="on", first_panel_alone=False))
    single = StoryboardGenerator.load(tiny_settings_factory(batch_panels="off"))
    calls, hook = unet_calls(batched)
    try:
        together = batched.generate(cast_request(casts))
    finally:
        hook.remove()
    # Three casts, three calls of two panels (x2 for CFG), two steps each: one cast per call.
    assert [batch for batch, *_ in calls] == [4] * 6
    alone = single.generate(cast_request(casts))
    assert [p.index for p in together.panels] == [1, 2, 3, 4, 5, 6]
    assert max_diff(together, alone) < 1e-4  # each panel as if drawn on its own: nothing mixed in


def test_one_by_one_the_panels_of_a_cast_keep_their_order(tiny_generator):
    seen = []
    tiny_generator.generate(cast_request([(0,), (1,), (0,)]), on_panel=lambda result: seen.append(result.index))
    assert seen == [1, 2, 3]


def test_each_cast_is_encoded_once_per_board(tiny_generator):
    before = tiny_generator.image_encoder_calls
    tiny_generator.generate(cast_request([(0,), (1,), (0, 1), (0,), (0, 1)]))
    assert tiny_generator.image_encoder_calls - before == 3


def test_a_panel_with_no_one_is_drawn_without_the_identity_lock(tiny_generator):
    nobody = tiny_generator.generate(cast_request([()]))
    unlocked = tiny_generator.generate(cast_request([()], lock=False))
    assert max_diff(nobody, unlocked) == 0


def test_the_scale_of_a_panel_with_several_characters_keeps_the_faces_apart(tiny_generator):
    def scales():
        return {tuple(round(float(s), 4) for s in p.scale)
                for p in tiny_generator.pipe.unet.attn_processors.values() if getattr(p, "to_k_ip", None)}

    def ran(result):
        return [panel.ran.ip_adapter_scale for panel in result.panels]

    assert ran(tiny_generator.generate(cast_request([(0, 1)], preset=PRESETS["quality"]))) == [0.7]
    assert scales() == {(0.7,)}  # quality's 0.8 would blend the faces; the panel says what ran
    assert ran(tiny_generator.generate(cast_request([(0, 1)], preset=PRESETS["ultra_fast"]))) == [0.5]
    assert scales() == {(0.5,)}
    assert ran(tiny_generator.generate(cast_request([(0,)], preset=PRESETS["quality"]))) == [0.8]
    assert scales() == {(0.8,)}  # one character: the mode's own scale
    assert ran(tiny_generator.generate(cast_request([()], preset=PRESETS["quality"]))) == [None]  # no one held


def test_a_panel_reports_what_ran_not_what_was_asked(tiny_generator):
    ran = tiny_generator.generate(request(count=1, steps=3)).panels[0].ran
    assert (ran.scheduler, ran.sampler, ran.steps, ran.guidance_scale, ran.lora) == (
        "EulerDiscreteScheduler", "Euler", 3, FAST.guidance_scale, None)
    assert ran.ip_adapter_scale == FAST.ip_adapter_scale


def test_a_portrait_progress_names_its_character_not_a_panel(tiny_generator):
    units = set()
    tiny_generator.generate(cast_request([(1,)], references=("a", "b"), portraits=True),
                            on_progress=lambda job, step, steps: units.add((job.index, job.portrait_of)))
    assert units == {(None, 1), (1, None)}  # character 1's portrait, then panel 1


def test_portraits_are_drawn_for_the_characters_shown_only(tiny_generator):
    seen = []
    result = tiny_generator.generate(cast_request([(1,), (1,)], references=("a", "b", "c"), portraits=True),
                                     on_reference=lambda character, image: seen.append(character))
    assert seen == [1] and result.references[0] is None and result.references[1] is not None


def test_a_drifted_panel_is_judged_against_its_casts_references(tiny_generator):
    judged = []

    def judge(references, image):
        judged.append(len(references))
        return {"status": "match", "distance": 0.1}

    tiny_generator.generate(cast_request([(0, 1), (1,), ()]), judge=judge)
    assert judged == [2, 1]  # nobody to judge in a panel with no one


@pytest.mark.parametrize("casts,field", [([(0, 2)], "cast"), ([(0, 0)], "cast"), ([(0, 1, 0, 1, 0)], "cast")])
def test_a_cast_the_request_lacks_is_refused(tiny_generator, casts, field):
    with pytest.raises(InputError) as caught:
        tiny_generator.generate(cast_request(casts))
    assert caught.value.field == field


def test_a_panel_where_one_characters_face_drifted_is_redrawn(tiny_generator):
    verdicts = iter(["drift", "match"])

    def judge(references, image):
        status = next(verdicts)
        return {"status": status, "distance": 0.9 if status == "drift" else 0.3, "characters": [
            {"status": status, "distance": 0.9 if status == "drift" else 0.3}, {"status": "match", "distance": 0.2}]}

    result = tiny_generator.generate(cast_request([(0, 1)]), judge=judge)
    assert result.panels[0].attempts == 2 and result.panels[0].identity["status"] == "match"
    assert result.panels[0].seed == 100 + MAX_FRAMES  # the retry's seed (board_params.retry_seed)


def test_a_portrait_is_drawn_only_for_a_locked_character_without_a_face_whom_some_panel_shows():
    from local_image_generator import StoryboardRequest

    portrait = PanelJob(None, "portrait", "", 1)
    face = Image.new("RGB", (8, 8))
    locks = (CharacterLock(portrait=portrait), CharacterLock(face, portrait), CharacterLock(portrait=portrait),
             CharacterLock(portrait=portrait))
    panels = [PanelJob(1, "a", "", 1, cast=(0, 1)), PanelJob(2, "b", "", 2, cast=(3,))]
    request = StoryboardRequest(panels, 64, 64, PRESETS["fast"], characters=locks)
    assert request.portraits_to_draw() == {0, 3}  # 1 has a face, 2 is in no panel
    assert request.reference_kind(face) == "generated" and request.reference_kind(None) is None
    unlocked = StoryboardRequest(panels, 64, 64, PRESETS["fast"], identity_lock=False, characters=locks)
    assert unlocked.portraits_to_draw() == frozenset()
    uploaded = StoryboardRequest(panels, 64, 64, PRESETS["fast"], characters=(locks[1], locks[0]))
    assert uploaded.reference_kind(face) == "uploaded"


@pytest.mark.parametrize("device, offload, whole", [("cpu", "model", True), ("cuda", "off", True),
                                                    ("cuda", "model", False), ("cuda", "sequential", False)])
def test_only_a_pipeline_placed_whole_names_its_device(device, offload, whole):
    """An offloaded pipeline's hooks decide where each model runs, so there diffusers keeps searching."""
    from model_loading import offloaded

    assert offloaded(load_settings({"STORYBOARD_CPU_OFFLOAD": offload}), device) is not whole
