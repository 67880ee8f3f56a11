"""Exports: ZIP contents and order, PDF text/pages/images, font lookup, PNG metadata."""

from __future__ import annotations

import copy
import io
import json
import zipfile

import pytest
from PIL import Image
from pypdf import PdfReader

from exporting import (
    encode_png,
    find_unicode_font,
    read_png_parameters,
    storyboard_pdf,
    storyboard_zip,
)

CYRILLIC = "Девушка смотрит на маяк"
HTML = "<script>alert(1)</script>"
FAILED_INDEX = 4  # a failed panel in the middle, so the numbering gap is visible


def png(color: tuple[int, int, int], size=(64, 36)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_frame(index: int, caption: str, failed: bool = False) -> dict:
    return {
        "index": index,
        "status": "failed" if failed else "done",
        "caption": caption,
        "shot": "establishing shot" if index == 1 else "medium shot",
        "prompt": f"prompt for panel {index}",
        "negative_prompt": "blurry",
        "seed": 1234 + index,
        "image_url": None if failed else f"/api/storyboards/a1b2c3/frames/{index}/image",
        "identity": None if failed else {"status": "match", "distance": 0.31, "clip_similarity": 0.92},
        "attempts": 2 if failed else 1,
        "error": "CUDA out of memory" if failed else None,
    }


@pytest.fixture
def board() -> dict:
    captions = [CYRILLIC, HTML, "She climbs the stairs", "Storm", "The lamp is lit", "Dawn"]
    return {
        "id": "a1b2c3",
        "title": "The lighthouse keeper",
        "status": "done",
        "created_at": "2026-11-26T16:00:00Z",
        "story": "A keeper tends the light.",
        "character": "young woman, oval face",
        "style": "ink wash",
        "settings": {
            "preset": "fast", "steps": 12, "guidance_scale": 6.5, "ip_adapter_scale": 0.5,
            "aspect": "16:9", "width": 1344, "height": 768, "seed": 1234, "identity_lock": True,
            "model": "stabilityai/stable-diffusion-xl-base-1.0",
        },
        "reference": {"kind": "uploaded", "image_url": "/api/storyboards/a1b2c3/reference"},
        "frames": [make_frame(i, c, failed=i == FAILED_INDEX) for i, c in enumerate(captions, 1)],
    }


@pytest.fixture
def images(board) -> dict[int, bytes]:
    return {f["index"]: png((40 * f["index"], 90, 200 - 20 * f["index"]))
            for f in board["frames"] if f["status"] == "done"}


def open_zip(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))


# --- ZIP ------------------------------------------------------------------------------


def test_zip_holds_one_png_per_generated_panel(board, images):
    names = set(open_zip(storyboard_zip(board, images)).namelist())
    panels = {f"panel-{i:02d}.png" for i in (1, 2, 3, 5, 6)}
    assert names == panels | {"storyboard.json"}


def test_zip_json_keeps_every_prompt_seed_and_file(board, images):
    meta = json.loads(open_zip(storyboard_zip(board, images)).read("storyboard.json"))
    assert [f["prompt"] for f in meta["frames"]] == [f["prompt"] for f in board["frames"]]
    assert [f["seed"] for f in meta["frames"]] == [f["seed"] for f in board["frames"]]
    assert meta["settings"] == board["settings"]
    assert meta["frames"][0]["caption"] == CYRILLIC
    assert [f["file"] for f in meta["frames"]] == [
        "panel-01.png", "panel-02.png", "panel-03.png", None, "panel-05.png", "panel-06.png"]


def test_zip_json_is_utf8_not_escaped(board, images):
    raw = open_zip(storyboard_zip(board, images)).read("storyboard.json")
    assert CYRILLIC.encode("utf-8") in raw


def test_zip_files_follow_display_order(board, images):
    board["frames"].reverse()  # the user dragged panel 6 to the front, and so on
    zf = open_zip(storyboard_zip(board, images))
    assert zf.read("panel-01.png") == images[6]
    assert zf.read("panel-02.png") == images[5]
    assert "panel-03.png" not in zf.namelist()  # the failed panel is now third


def test_zip_includes_reference_when_given(board, images):
    ref = png((1, 2, 3))
    zf = open_zip(storyboard_zip(board, images, reference_png=ref))
    assert zf.read("reference.png") == ref
    assert json.loads(zf.read("storyboard.json"))["reference"]["file"] == "reference.png"


def test_zip_does_not_mutate_board(board, images):
    before = copy.deepcopy(board)
    storyboard_zip(board, images, reference_png=png((1, 2, 3)))
    assert board == before


# --- PDF ------------------------------------------------------------------------------


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_pdf_renders_cyrillic_and_html_as_text(board, images):
    text = pdf_text(storyboard_pdf(board, images))
    assert CYRILLIC in text
    assert HTML in text
    assert "The lighthouse keeper" in text


def test_pdf_shows_settings_identity_and_failure(board, images):
    text = pdf_text(storyboard_pdf(board, images))
    assert "12 steps" in text and "CFG 6.5" in text and "seed 1234" in text
    assert "face 0.31" in text
    assert "Generation failed" in text


def test_pdf_numbers_panels(board, images):
    lines = pdf_text(storyboard_pdf(board, images)).splitlines()
    labels = [line.split()[0] for line in lines if line.endswith(("shot", "match"))]
    assert labels == ["1", "2", "3", "4", "5", "6"]


def test_pdf_overflows_to_more_pages(board, images):
    board["frames"] += [make_frame(7, "Night falls"), make_frame(8, "The ship arrives")]
    images = {**images, 7: png((0, 0, 0)), 8: png((255, 255, 255))}
    reader = PdfReader(io.BytesIO(storyboard_pdf(board, images)))
    assert len(reader.pages) == 2
    assert "Night falls" in reader.pages[1].extract_text()


def test_pdf_embeds_panel_images(board, images):
    reader = PdfReader(io.BytesIO(storyboard_pdf(board, images)))
    assert len(reader.pages[0].images) == len(images) == 5


def test_pdf_is_reproducible(board, images):
    assert storyboard_pdf(board, images) == storyboard_pdf(board, images)


# --- Font lookup ----------------------------------------------------------------------


def test_find_unicode_font_names_the_package_when_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="fonts-dejavu-core"):
        find_unicode_font([tmp_path / "nope.ttf"])
    with pytest.raises(FileNotFoundError, match="fonts-dejavu-core"):
        find_unicode_font([])


def test_find_unicode_font_returns_first_existing(tmp_path):
    font = tmp_path / "Some.ttf"
    font.write_bytes(b"")
    assert find_unicode_font([tmp_path / "missing.ttf", font]) == font


# --- PNG metadata ---------------------------------------------------------------------


PARAMS = {
    "prompt": f"{CYRILLIC}, ink wash", "negative_prompt": "blurry, extra fingers",
    "steps": 12, "guidance_scale": 6.5, "seed": 1235, "width": 1344, "height": 768,
    "model": "stabilityai/stable-diffusion-xl-base-1.0", "ip_adapter_scale": 0.5,
    "caption": HTML,
}


def test_png_round_trips_parameters_including_cyrillic():
    data = encode_png(Image.new("RGB", (32, 18), "navy"), PARAMS)
    assert read_png_parameters(data) == PARAMS


def test_png_parameters_chunk_has_a1111_shape():
    data = encode_png(Image.new("RGB", (32, 18), "navy"), PARAMS)
    text = Image.open(io.BytesIO(data)).text["parameters"]
    prompt, negative, fields = text.split("\n")
    assert prompt == PARAMS["prompt"]
    assert negative == "Negative prompt: blurry, extra fingers"
    assert fields.startswith("Steps: 12, Sampler: Euler, CFG scale: 6.5, Seed: 1235, Size: 1344x768")
    assert "Model: stabilityai/stable-diffusion-xl-base-1.0" in fields
    assert "IP-Adapter scale: 0.5" in fields


def test_png_parameters_leave_out_missing_keys():
    text = Image.open(io.BytesIO(encode_png(Image.new("L", (8, 8)), {"seed": 7}))).text
    assert text["parameters"] == "Sampler: Euler, Seed: 7"


def test_read_png_parameters_of_plain_png_is_empty():
    assert read_png_parameters(png((0, 0, 0))) == {}
