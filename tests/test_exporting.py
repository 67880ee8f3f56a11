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
    find_fallback_fonts,
    find_unicode_font,
    pdf_notice,
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


def test_zip_includes_every_reference_given(board, images):
    board["characters"] = [{"name": "Mara", "traits": "red hair", "reference": {"kind": "uploaded"}},
                           {"name": "Ilya", "traits": "grey beard", "reference": {"kind": "generated"}}]
    mara, ilya = png((1, 2, 3)), png((4, 5, 6))
    zf = open_zip(storyboard_zip(board, images, references={1: mara, 2: ilya}))
    assert (zf.read("reference-1.png"), zf.read("reference-2.png")) == (mara, ilya)
    meta = json.loads(zf.read("storyboard.json"))
    assert [c["reference"]["file"] for c in meta["characters"]] == ["reference-1.png", "reference-2.png"]
    assert meta["reference"]["file"] == "reference-1.png"  # the first character's, as before the cast


def test_zip_does_not_mutate_board(board, images):
    before = copy.deepcopy(board)
    storyboard_zip(board, images, references={1: png((1, 2, 3))})
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


def test_pdf_header_shows_the_ip_scale_only_while_the_identity_lock_is_on(board, images):
    assert "IP scale 0.5" in pdf_text(storyboard_pdf(board, images))
    board["settings"]["identity_lock"] = False
    text = pdf_text(storyboard_pdf(board, images))
    assert "IP scale" not in text
    assert "identity lock off" in text and "12 steps" in text and "CFG 6.5" in text


def test_pdf_header_states_what_the_panels_png_say_ran(board, images):
    ran = {"steps": 4, "guidance_scale": 0.0, "sampler": "DDIM", "lora": "hyper-sd"}
    scales = {1: 0.7, 2: 0.5}  # a cast panel ran at its clamped scale; another at the preset's
    for index in images:
        images[index] = encode_png(Image.open(io.BytesIO(images[index])),
                                   {**ran, "ip_adapter_scale": scales.get(index)})
    text = pdf_text(storyboard_pdf(board, images))
    assert "4 steps" in text and "CFG 0" in text and "DDIM" in text and "hyper-sd LoRA" in text
    assert "IP scale 0.7/0.5" in text and "12 steps" not in text


class DrawnText:
    """Every text cell the PDF draws, with the colour it is drawn in (as 0-255 RGB)."""

    def __init__(self, monkeypatch):
        import exporting

        self.cells: list[tuple[str, tuple[float, ...]]] = []
        cells = self.cells

        class Recording(exporting.FPDF):
            def cell(self, w=None, h=None, text="", *args, **kwargs):
                color = self.text_color
                rgb = (color.r, color.g, color.b) if hasattr(color, "r") else (color.g,) * 3
                cells.append((text, tuple(round(c * 255) for c in rgb)))
                return super().cell(w, h, text, *args, **kwargs)

        monkeypatch.setattr(exporting, "FPDF", Recording)

    def color_of(self, text: str) -> tuple[float, ...]:
        colors = {color for cell, color in self.cells if cell.startswith(text)}
        assert len(colors) == 1, (text, colors, self.cells)
        return colors.pop()


def is_grey(rgb) -> bool:
    return max(rgb) - min(rgb) < 2


def test_no_face_is_information_and_only_drift_is_a_warning(board, images, monkeypatch):
    board["frames"][1]["identity"] = {"status": "no_face", "distance": None, "clip_similarity": 0.4}
    board["frames"][2]["identity"] = {"status": "drift", "distance": 0.72, "clip_similarity": 0.5}
    drawn = DrawnText(monkeypatch)
    storyboard_pdf(board, images)
    no_face, drift, match = drawn.color_of("no face"), drawn.color_of("face 0.72"), drawn.color_of("face 0.31")
    assert is_grey(no_face), no_face
    assert no_face == drawn.color_of("medium shot")  # the same grey as the other panel facts
    assert not is_grey(drift) and drift[0] > drift[2], drift  # a warm warning colour
    assert not is_grey(match) and match[1] > match[0], match  # green
    assert drift != match


def test_a_board_wide_error_is_not_repeated_in_every_panel(board, images, monkeypatch):
    long_error = ("Could not load stabilityai/stable-diffusion-xl-base-1.0: no network and no cached copy "
                  "in /home/someone/.cache/huggingface/hub; run once online or set STORYBOARD_SDXL_MODEL")
    board["status"], board["error"] = "failed", long_error
    for frame in board["frames"][3:]:
        frame.update(status="failed", image_url=None, identity=None, error=long_error[:60])
    board["frames"][5]["error"] = "Not drawn: the storyboard failed."
    drawn = DrawnText(monkeypatch)
    text = pdf_text(storyboard_pdf(board, {i: images[i] for i in (1, 2, 3)}))
    assert "no network" not in text and "Not drawn: the" not in text
    assert [cell for cell, _ in drawn.cells].count("Not drawn") == 3


def test_a_panel_keeps_its_own_error(board, images):
    text = pdf_text(storyboard_pdf(board, images))
    assert "Generation failed" in text and "CUDA out of memory" in text


def test_pdf_numbers_panels(board, images):
    lines = pdf_text(storyboard_pdf(board, images)).splitlines()
    labels = [line.split()[0] for line in lines if "shot seed" in line]
    assert labels == ["1", "2", "3", "4", "5", "6"]


def test_each_panel_shows_its_own_seed_and_the_header_the_mode_date_style_and_lock(board, images):
    board["mode"] = "Fast draft"
    board["frames"][2]["seed"] = 987654  # redrawn with a seed of its own
    text = pdf_text(storyboard_pdf(board, images))
    assert "medium shot seed 987654" in text and "establishing shot seed 1235" in text
    assert "Fast draft" in text and "26 Nov 2026" in text and "style: ink wash" in text
    assert "identity lock on" in text and "board seed 1234" in text
    assert "Preset fast" not in text


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


CHINESE, ARABIC, HINDI = "灯塔守护者点亮了灯", "الحارس يضيء المنارة", "रखवाला दीया जलाता है"


def squeezed(text: str) -> str:
    """Text without whitespace: pypdf puts spaces or NULs between CJK glyphs, tabs inside Devanagari."""
    return "".join(text.replace("\x00", "").split())


@pytest.mark.skipif({"CJK", "Devanagari"} - {family for family, _, _ in find_fallback_fonts()},
                    reason="no CJK or Devanagari font here (.ci/run installs fonts-noto-cjk, fonts-lohit-deva)")
def test_chinese_arabic_and_hindi_captions_are_drawn_as_text(board, images):
    board["title"] = "灯塔守护者"
    for frame, caption in zip(board["frames"], (CHINESE, ARABIC, HINDI)):
        frame["caption"] = caption
    text = squeezed(pdf_text(storyboard_pdf(board, images)))
    assert "灯塔守护者" in text and squeezed(CHINESE) in text and squeezed(HINDI) in text
    assert squeezed(ARABIC) in text  # in reading order: shaped right to left, extracted as written
    assert "cannotbedrawn" not in text


def test_a_script_no_font_here_can_draw_is_named_in_the_pdf(board, images, caplog):
    board["frames"][0]["caption"] = CHINESE
    text = pdf_text(storyboard_pdf(board, images, fallback_fonts=()))
    assert "Text in Chinese/Japanese cannot be drawn" in text and "install fonts-noto-cjk" in text
    assert "cannot be drawn" in caplog.text


TIBETAN = "བཀྲ་ཤིས་བདེ་ལེགས"  # no font the studio looks for has Tibetan


def test_the_page_is_told_what_the_pdf_cannot_draw_as_the_pdf_says_it(board, images):
    """The same font coverage decides both: the board's notice for the page, the PDF's at its top."""
    assert pdf_notice(board) is None  # Latin, Cyrillic and markup: all drawn
    board["frames"][1]["caption"] = TIBETAN
    notice = pdf_notice(board)
    assert notice == "Text in Tibetan cannot be drawn with the fonts on this machine and is missing from the PDF."
    assert notice.replace("from the PDF", "below") in pdf_text(storyboard_pdf(board, images))
    board["frames"][1]["caption"] = "A calm sea."
    board["frames"][1]["dialogue"] = TIBETAN
    assert "Tibetan" in pdf_notice(board)  # the dialogue is drawn under the caption
    del board["frames"][1]
    board["characters"] = [{"name": TIBETAN, "traits": "", "reference": None}]
    assert "Tibetan" in pdf_notice(board)  # a character's name is drawn on the cast page


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
    "sampler": "Euler", "scheduler": "EulerDiscreteScheduler", "lora": None, "caption": HTML,
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
    assert text["parameters"] == "Seed: 7"  # no sampler claimed that the parameters do not name


def test_read_png_parameters_of_plain_png_is_empty():
    assert read_png_parameters(png((0, 0, 0))) == {}


# --- A cast -----------------------------------------------------------------------------


def cast_board(board):
    board["characters"] = [
        {"name": "Мара", "traits": "young woman, oval face, red hair", "reference": {"kind": "uploaded"}},
        {"name": "Ilya", "traits": "old man, grey beard", "reference": {"kind": "generated"}},
        {"name": "Bo", "traits": "boy, freckles", "reference": {"kind": None}}]
    board["frames"][0]["cast"] = ["Мара", "Ilya"]
    board["frames"][0]["identity"] = {"status": "drift", "distance": 0.71, "characters": [
        {"name": "Мара", "status": "match", "distance": 0.31},
        {"name": "Ilya", "status": "drift", "distance": 0.71}]}
    board["frames"][1]["identity"] = {"status": "match", "distance": 0.2, "characters": [
        {"name": "Мара", "status": "match", "distance": 0.2},
        {"name": "Ilya", "status": "missing", "distance": None}]}
    return board


def test_pdf_ends_with_a_cast_page_of_names_traits_and_faces(board, images):
    data = storyboard_pdf(cast_board(board), images, references={1: png((9, 9, 9)), 2: png((1, 1, 1))})
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 2 and "1 / 2" in reader.pages[0].extract_text()
    cast = reader.pages[1].extract_text()
    assert "Cast" in cast and "Мара" in cast and "young woman, oval face, red hair" in cast and "Bo" in cast
    assert "Uploaded face" in cast and "Generated portrait" in cast and "No reference" in cast
    assert len(reader.pages[1].images) == 2


def test_pdf_panels_name_their_cast_and_each_face(board, images):
    text = pdf_text(storyboard_pdf(cast_board(board), images))
    assert "Мара 0.31 ✓" in text and "Ilya 0.71 ✗" in text and "Ilya not found" in text


LONG_NAMES = ["Marguerite-Anastasia", "Bartholomew Okonkwo", "Konstantin Vasilyevich", "Xiomara Delacroix-Pérez"]


def test_a_cast_of_four_long_names_shows_every_name_and_score_in_full(board, images):
    board["characters"] = [{"name": name, "traits": "", "reference": {"kind": None}} for name in LONG_NAMES]
    board["frames"][0]["cast"] = LONG_NAMES
    board["frames"][0]["identity"] = {"status": "drift", "distance": 0.7, "characters": [
        {"name": name, "status": "match", "distance": 0.3 + k / 100} for k, name in enumerate(LONG_NAMES)]}
    board["frames"][0]["caption"] = "The four of them climb the spiral stairs together"
    page = " ".join(PdfReader(io.BytesIO(storyboard_pdf(board, images))).pages[0].extract_text().split())
    for k, name in enumerate(LONG_NAMES):
        assert f"{name} {0.3 + k / 100:.2f} ✓" in page
    assert "…" not in page and "The four of them climb the spiral stairs together" in page


def test_a_panels_dialogue_is_drawn_in_quotes_under_its_caption(board, images):
    board["frames"][0]["dialogue"] = "MARA: Up there, on the rocks!"
    page = " ".join(pdf_text(storyboard_pdf(board, images)).split())
    assert "The lighthouse keeper" in page and "“MARA: Up there, on the rocks!”" in page


def test_a_long_dialogue_under_a_cast_of_long_names_keeps_a_line_of_the_caption(board, images):
    board["characters"] = [{"name": name, "traits": "", "reference": {"kind": None}} for name in LONG_NAMES]
    board["frames"][0]["cast"] = LONG_NAMES
    board["frames"][0]["caption"] = "The four of them climb"
    board["frames"][0]["dialogue"] = "MARA: " + "Keep climbing, all of you, we are nearly there. " * 6
    page = " ".join(PdfReader(io.BytesIO(storyboard_pdf(board, images))).pages[0].extract_text().split())
    assert all(name in page for name in LONG_NAMES)
    assert "The four of them climb" in page and "“MARA: Keep climbing" in page and "…" in page


def test_a_panel_with_no_one_says_so(board, images):
    cast_board(board)["frames"][2]["cast"] = []
    assert "no one in this panel" in pdf_text(storyboard_pdf(board, images))


def test_a_board_without_characters_has_no_cast_page(board, images):
    assert len(PdfReader(io.BytesIO(storyboard_pdf(board, images))).pages) == 1


def test_pdf_export_logs_no_font_subsetting_chatter(board, images, caplog):
    # fpdf2 subsets the font through fontTools, which logs ~20 INFO lines a PDF.
    caplog.set_level("INFO")
    storyboard_pdf(board, images)
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("fontTools")]
