"""The page in a real browser (headless Chromium via Playwright) against the real app on the
tiny offline models: generate a 6-panel board, redraw a panel, reorder, export, reuse its
settings, open a panel's details, and check that user text is shown as text; draw a story
with a cast of two and change one panel's cast; plan a story, edit the plan and
draw it. Short flows run against a studio whose model cannot be loaded,
one whose worker fails or stopped, and one that plans with an LLM stand-in. Every page
records Content-Security-Policy violations, and none may happen. With UPDATE_SCREENSHOT=1
it also refreshes docs/screenshot.png.

Needs Debian's Chromium at /usr/bin/chromium (Playwright cannot download its own browser
offline). Without it the test is skipped, except under CI (CI=true), where it fails.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import json
import os
import re
import shutil
import threading
import time
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from studio import studio_of

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
STATIC_JS = ROOT / "static" / "js"
DOCS_SCREENSHOT = ROOT / "docs" / "screenshot.png"
TIMEOUT_MS = 60_000  # one step in the page
BOARD_TIMEOUT_MS = 180_000  # a whole board; the tiny model is quick, but test machines are shared and noisy

CYRILLIC = "Девушка смотрит на маяк"
SCRIPT_LINE = "A note reads <script>alert(1)</script> in red ink"
STORY_LINES = [
    "Mara finds an old map in the attic.",
    CYRILLIC,
    "She cycles to the harbour at dawn.",
    SCRIPT_LINE,
    "A storm rolls in over the cliffs.",
    "She lights the lamp at the top of the tower.",
]
CHARACTER = "young woman, oval face, large green eyes, short auburn bob, freckles, yellow raincoat"
# What a studio without network and without the weights says, with an unbreakable path in it.
LOAD_ERROR = ("Could not load stabilityai/stable-diffusion-xl-base-1.0: it is not in the Hugging Face cache "
              "(/home/someone/.cache/huggingface/hub/models--stabilityai--stable-diffusion-xl-base-1.0/snapshots) "
              "and the hub cannot be reached (no network). Run `make run` once with a network connection, or "
              "set STORYBOARD_SDXL_MODEL to a local folder in the diffusers layout.")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_browser():
    if not CHROMIUM.exists():
        message = "Chromium not installed: apt-get install chromium"
        if _in_ci():
            pytest.fail(message + " (required under CI)")
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        if _in_ci():
            pytest.fail("playwright is not installed (pip install -r requirements-dev.txt)")
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")


# --- Fixtures: one server, one browser for the module ---------------------------------------


@contextlib.contextmanager
def _serving(app):
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="browser-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()
        studio_of(app).backend.stop()


@pytest.fixture(scope="module")
def studio(tiny_settings_factory):
    """The module's app: the real tiny generator, loaded by the worker on first use, and
    every panel scored as by default (the tiny models draw no faces: honest "no face"s)."""
    _require_browser()
    from app import create_app

    return create_app(tiny_settings_factory(identity_scoring=True))


@pytest.fixture(scope="module")
def server(studio):
    with _serving(studio) as url:
        yield url


class BrokenModel:
    """A model loader that fails as `make run` does offline, once the test has seen it loading."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        self.release.wait(BOARD_TIMEOUT_MS / 1000)
        raise RuntimeError(LOAD_ERROR)


@pytest.fixture
def broken_server(tiny_settings_factory):
    _require_browser()
    from app import create_app

    model = BrokenModel()
    try:
        with _serving(create_app(tiny_settings_factory(), load_generator=model)) as url:
            yield url, model
    finally:
        model.release.set()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Playwright's init scripts are not subject to the page's CSP: this one sees every violation,
# keeps it in the page and hands it to the test (which survives reloads).
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const seen = {directive: event.violatedDirective, blocked: event.blockedURI, sample: event.sample,
                source: `${event.sourceFile}:${event.lineNumber}`};
  window.__cspViolations.push(seen);
  window.__reportCspViolation(seen);
}, true);
"""


class PageWatch:
    """A page plus what went wrong in it: JS dialogs, uncaught errors, console errors and
    Content-Security-Policy violations."""

    def __init__(self, browser, base_url: str, **context_options):
        self.context = browser.new_context(base_url=base_url, **context_options)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.csp: list[dict] = []
        self.context.expose_binding("__reportCspViolation", lambda source, seen: self.csp.append(seen))
        self.context.add_init_script(CSP_RECORDER)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("console", self._on_console)

    def _on_dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_console(self, message):
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def assert_clean(self, answered: tuple[int, ...] = ()):
        """Nothing went wrong, but for the error answers the test asked for (``answered``:
        their HTTP statuses, which Chromium logs as console errors)."""
        expected = tuple(f"the server responded with a status of {status} " for status in answered)
        assert self.dialogs == [], self.dialogs
        assert [e for e in self.errors if not any(words in e for words in expected)] == [], self.errors
        assert self.page.evaluate("window.__cspViolations") == [] and self.csp == [], self.csp

    def close(self):
        self.context.close()


def _page_script() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(STATIC_JS.glob("*.js")))


def in_page(page, body: str, arg=None):
    """Run ``body`` (statements) in the page on the modules it runs, none of which is global:
    ``m`` holds the exports of the modules named here, ``arg`` the argument."""
    return page.evaluate("async ([names, arg]) => { const m = Object.assign({}, ...await Promise.all("
                         "names.map((name) => import(`/static/js/${name}.js`)))); " + body + " }",
                         [["state", "view", "events", "board", "presets", "dialog", "plan"], arg])


def _poll(check, timeout: float = TIMEOUT_MS / 1000, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.1)


# Records whether the progress box was ever shown (it is hidden again once the board is done),
# whether it was ever entirely in view, and every value the bar showed.
PROGRESS_OBSERVER = """
window.__seen = {progress: false, progressInView: false, values: []};
function __look() {
  const box = document.getElementById("progress");
  if (!box || box.hidden) return;
  window.__seen.progress = true;
  const rect = box.getBoundingClientRect();
  if (rect.height > 0 && rect.top >= 0 && rect.bottom <= window.innerHeight) window.__seen.progressInView = true;
}
new MutationObserver((records) => {
  for (const record of records) {
    if (record.type === "attributes" && record.attributeName === "value" && record.target.id === "progress-bar"
        && record.target.hasAttribute("value")) {
      window.__seen.values.push(Number(record.target.getAttribute("value")));
    }
  }
  __look();
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
window.addEventListener("scroll", __look);
"""

# Term -> value of the panel details dialog.
DIALOG_DETAILS = """
() => Object.fromEntries([...document.querySelectorAll("#panel-dialog-details dt")]
  .map((dt) => [dt.textContent, dt.nextElementSibling.textContent]))
"""

TOP_OF = "(selector) => document.querySelector(selector).getBoundingClientRect().top"

ALL_PANELS_LOADED = """
(count) => {
  const images = [...document.querySelectorAll("#board .panel img.panel-image")];
  return images.length === count && images.every((img) => img.complete && img.naturalWidth > 0)
    && document.querySelectorAll("#board .panel").length === count;
}
"""


def _save_small_png(source: Path, target: Path, limit: int = 400_000) -> None:
    """Copy a screenshot; the noisy tiny-model panels compress badly, so above ``limit`` the
    copy is reduced to a 256-colour palette (the page's flat colours survive unchanged)."""
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, target)
    if target.stat().st_size > limit:
        from PIL import Image

        with Image.open(source) as image:
            image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
                target, optimize=True)


def _server_state(page) -> str:
    """For a failure message: the health, the history and the open board, as the API gives them."""
    lines = []
    try:
        for path in ("/api/health", "/api/storyboards"):
            lines.append(f"{path}: {page.request.get(path).text()[:1500]}")
        board_id = page.evaluate("decodeURIComponent(location.hash.replace('#board=', ''))")
        if board_id:
            board = page.request.get(f"/api/storyboards/{board_id}").json()
            lines.append(f"board {board_id}: status={board['status']} error={board['error']} "
                         f"progress={board['progress']} frames="
                         f"{[(f['id'], f['status'], f['error']) for f in board['frames']]}")
        lines.append(f"#board-status: {page.text_content('#board-status')!r}; "
                     f"#error: {page.text_content('#error')!r}")
    except Exception as error:  # the page or the server may be gone
        lines.append(f"(could not ask: {error})")
    return "\n".join(lines)


def _identity_words(identity: dict) -> str:
    """The panel details' identity line for a panel the tiny models drew (no face in it)."""
    words = {"no_face": "no face", "no_reference_face": "no reference face"}[identity["status"]]
    return f"{words} (CLIP similarity {identity['clip_similarity']:.2f})"


def _draw_board(page, story: str, frames: int) -> str:
    """Draw a board through the form as a person would, wait until it is done; its id."""
    from playwright.sync_api import expect

    page.fill("#story", story)
    page.fill("#frames", str(frames))
    page.click("#generate")
    expect(page.locator("#board-status")).to_have_text("done", timeout=BOARD_TIMEOUT_MS)
    return _open_board_id(page)


def _open_board_id(page) -> str:
    """The id of the board the page shows (its address says it)."""
    return page.evaluate("() => decodeURIComponent(location.hash.slice('#board='.length))")


def _page_order(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#board .panel", "nodes => nodes.map(n => n.dataset.frameId)")]


# --- The test -------------------------------------------------------------------------------


def test_generate_redraw_reorder_export(browser, server, artifacts):
    from playwright.sync_api import expect

    started = time.monotonic()
    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    page.add_init_script(PROGRESS_OBSERVER)
    try:
        page.goto("/")
        expect(page.locator("#preset option[value='ultra_fast']")).to_have_count(1)

        # Every speed mode the server offers, with its cost in words (or its numbers).
        presets = page.request.get("/api/presets").json()["presets"]
        expect(page.locator("#preset option")).to_have_count(len(presets))
        for preset in presets:
            page.select_option("#preset", preset["name"])
            expect(page.locator("#preset-hint")).to_contain_text(preset.get("description")
                                                                 or f"{preset['steps']} steps")

        # A validation message goes away once its field is corrected (Ctrl+Enter submits).
        error_box, story = page.locator("#error"), page.locator("#story")
        page.focus("#story")
        page.keyboard.press("Control+Enter")
        expect(error_box).to_contain_text("story")
        expect(story).to_have_attribute("aria-invalid", "true")
        page.fill("#story", "\n".join(STORY_LINES))
        expect(error_box).to_have_text("")
        expect(story).not_to_have_attribute("aria-invalid", "true")
        page.fill("#frames", "12")
        page.keyboard.press("Control+Enter")
        expect(error_box).to_contain_text("panel count")
        page.fill("#frames", "6")
        expect(error_box).to_have_text("")
        expect(page.locator("#board .panel")).to_have_count(0)  # nothing was submitted meanwhile

        # Fill the form, and generate from the bottom of the form: the board comes into view.
        page.fill("#character", CHARACTER)
        page.select_option("#preset", "ultra_fast")
        page.fill("#seed", "42")
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        assert page.evaluate(TOP_OF, "#board-title") < 0, "the test needs the board out of view"
        page.click("#generate")
        expect(page.locator("#board-title")).to_be_in_viewport()

        board_status = page.locator("#board-status")
        expect(page.locator("#board .panel")).to_have_count(6)
        page.wait_for_function(ALL_PANELS_LOADED, arg=6, timeout=BOARD_TIMEOUT_MS)
        expect(board_status).to_have_text("done")
        expect(page.locator("#error")).to_have_text("")
        assert page.evaluate("window.__seen.progress"), "the progress box was never shown while drawing"
        assert page.evaluate("window.__seen.progressInView"), "the progress box was never in view"
        values = page.evaluate("window.__seen.values")
        assert values and values == sorted(values), f"the progress bar went back: {values}"

        board_id = page.evaluate("decodeURIComponent(location.hash.replace('#board=', ''))")
        assert board_id
        api = page.request

        def board():
            answer = api.get(f"/api/storyboards/{board_id}")
            assert answer.ok, answer.status
            return answer.json()

        first = board()
        assert first["status"] == "done"
        assert [f["caption"] for f in first["frames"]] == STORY_LINES
        assert [f["seed"] for f in first["frames"]] == [42, 43, 44, 45, 46, 47]

        # User text is shown verbatim, as text: the <script> line is a caption, not markup.
        captions = page.locator("#board .panel .panel-caption")
        expect(captions).to_have_text(STORY_LINES)
        expect(page.locator("#board .panel[data-index='2'] .panel-caption")).to_have_text(CYRILLIC)
        assert page.locator("#board script").count() == 0
        expect(page.locator("#board .panel[data-index='1'] .panel-seed")).to_have_text("seed 42")
        expect(page.locator("#cast-view img")).to_be_visible()
        expect(page.locator(f"#history .history-item[data-id='{board_id}']")).to_have_count(1)
        expect(page.locator("#progress")).to_be_hidden()
        if first.get("notices"):  # e.g. a story not in English, once the studio says so
            expect(page.locator("#board-notices li")).to_have_text(first["notices"])
        else:
            expect(page.locator("#board-notices")).to_be_hidden()

        # Download saves a panel under its ZIP name, by position.
        with page.expect_download() as download:
            page.locator("#board .panel[data-index='1'] .download").click()
        assert download.value.suggested_filename == "panel-01.png"
        expect(page.locator("#board .panel[data-index='3'] .download")).to_have_attribute("download", "panel-03.png")

        # A click on a panel shows it large with everything that made it; Esc closes it.
        page.locator("#board .panel[data-index='1'] .panel-open").click()
        dialog = page.locator("#panel-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#panel-dialog-caption")).to_have_text(STORY_LINES[0])
        details, settings, frame1 = page.evaluate(DIALOG_DETAILS), first["settings"], first["frames"][0]
        assert details["Prompt"] == frame1["prompt"] and details["Negative prompt"] == frame1["negative_prompt"]
        assert details["Seed"] == "42" and details["Steps"] == str(settings["steps"])
        assert details["CFG"] == f"{settings['guidance_scale']:.1f}"
        assert details["IP-Adapter scale"] == f"{settings['ip_adapter_scale']:.2f}"
        assert details["Attempts"] == str(frame1["attempts"])
        assert details["Identity"] == _identity_words(frame1["identity"])
        assert "Faces" not in details  # one unnamed character: its score is the panel's, said once
        assert details["Consistent look"] == "off"
        assert re.fullmatch(r"\d+\.\d s", details["Time"]), details["Time"]
        assert details["Scene words cut"].startswith(frame1["prompt_shortened"] or "none")
        page.screenshot(path=str(artifacts / "panel-dialog.png"))
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

        # Redraw panel 2: a new seed, a new image, and the board is done again.
        page.evaluate("window.__seen.values = []")
        panel2 = page.locator("#board .panel[data-index='2']")
        old_src = panel2.locator("img.panel-image").get_attribute("src")
        panel2.locator(".redraw").click()
        page.wait_for_function(
            """(old) => {
                 const img = document.querySelector("#board .panel[data-index='2'] img.panel-image");
                 return img && img.getAttribute("src") !== old && img.complete && img.naturalWidth > 0
                   && document.getElementById("board-status").textContent === "done";
               }""",
            arg=old_src, timeout=BOARD_TIMEOUT_MS)
        redrawn = _poll(lambda: (b := board()) and b["status"] == "done"
                        and all(f["status"] == "done" for f in b["frames"]) and b,
                        message="the redraw to finish")
        assert redrawn["frames"][1]["id"] == first["frames"][1]["id"]
        page.wait_for_function(ALL_PANELS_LOADED, arg=6, timeout=TIMEOUT_MS)
        values = page.evaluate("window.__seen.values")
        assert values == sorted(values), f"the progress bar went back while redrawing: {values}"

        # The redraw is a second take: the dialog lists both, and ‹ shows the first again at once.
        expect(panel2.locator(".take-count")).to_have_text("2/2")
        panel2.locator(".panel-open").click()
        expect(page.locator("#panel-dialog-details .takes li")).to_have_count(2)
        expect(page.locator("#panel-dialog-details .takes li").nth(0)).to_contain_text("Take 1: seed 43")
        expect(page.locator("#panel-dialog-details .takes li.chosen")).to_contain_text("Take 2 (shown)")
        page.keyboard.press("Escape")
        panel2.locator(".take-prev").click()
        expect(panel2.locator(".take-count")).to_have_text("1/2")
        expect(panel2.locator(".panel-seed")).to_have_text("seed 43")
        expect(panel2.locator("img.panel-image")).not_to_have_attribute("src", redrawn["frames"][1]["image_url"])
        assert board()["frames"][1]["take"] == 1
        page.wait_for_function(ALL_PANELS_LOADED, arg=6, timeout=TIMEOUT_MS)
        shown = page.evaluate("""() => fetch(document.querySelector("#board .panel[data-index='2'] img.panel-image").src)
                                   .then((r) => r.arrayBuffer()).then((b) => b.byteLength)""")
        takes = redrawn["frames"][1]["takes"]
        assert shown == len(api.get(takes[0]["image_url"]).body()) != len(api.get(takes[1]["image_url"]).body())

        # Refine makes a third take from the one shown, and shows it.
        panel2.locator(".refine").click()
        expect(panel2.locator(".take-count")).to_have_text("3/3", timeout=BOARD_TIMEOUT_MS)
        expect(board_status).to_have_text("done")
        refined = _poll(lambda: (b := board()) and b["status"] == "done" and b, message="the refine to finish")
        assert refined["frames"][1]["takes"][2]["parent"] == 1 and refined["frames"][1]["takes"][2]["mode"] == "quality"
        page.wait_for_function(ALL_PANELS_LOADED, arg=6, timeout=TIMEOUT_MS)

        # Move panel 1 to the right: the server and the page both show the new order.
        ids = [f["id"] for f in redrawn["frames"]]
        page.locator("#board .panel[data-index='1'] .move-right").click()
        expected = [ids[1], ids[0], *ids[2:]]
        reordered = _poll(lambda: (b := board()) and [f["id"] for f in b["frames"]] == expected and b,
                          message="the new order to be saved")
        assert reordered["frames"][0]["id"] == ids[1] and reordered["frames"][1]["id"] == ids[0]
        _poll(lambda: _page_order(page) == expected, message="the page to show the new order")
        expect(page.locator("#board .panel[data-index='1'] .panel-caption")).to_have_text(CYRILLIC)
        expect(page.locator("#board .panel[data-index='2'] .panel-caption")).to_have_text(STORY_LINES[0])
        expect(board_status).to_have_text("done")
        page.wait_for_function(ALL_PANELS_LOADED, arg=6, timeout=TIMEOUT_MS)
        new_captions = [STORY_LINES[1], STORY_LINES[0], *STORY_LINES[2:]]
        expect(captions).to_have_text(new_captions)

        # Exports follow the new order and keep the text verbatim.
        zip_href = page.locator("#export-zip").get_attribute("href")
        pdf_href = page.locator("#export-pdf").get_attribute("href")
        expect(page.locator("#export-zip")).to_be_visible()
        zipped = api.get(zip_href)
        assert zipped.ok and zipped.headers["content-type"].startswith("application/zip")
        with zipfile.ZipFile(io.BytesIO(zipped.body())) as archive:
            names = set(archive.namelist())
            assert {f"panel-{i:02d}.png" for i in range(1, 7)} <= names
            assert "storyboard.json" in names
            for i in range(1, 7):
                assert archive.read(f"panel-{i:02d}.png").startswith(b"\x89PNG")
            exported = json.loads(archive.read("storyboard.json").decode("utf-8"))
        assert [f["id"] for f in exported["frames"]] == expected
        exported_captions = [f["caption"] for f in exported["frames"]]
        assert exported_captions == new_captions
        assert CYRILLIC in exported_captions and SCRIPT_LINE in exported_captions

        from pypdf import PdfReader

        pdf = api.get(pdf_href)
        assert pdf.ok and pdf.body().startswith(b"%PDF")
        text = "\n".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(pdf.body())).pages)
        assert CYRILLIC in " ".join(text.split()), text[:500]
        expect(page.locator("#export-pdf-notice")).to_be_hidden()  # every word drawn: nothing to say

        # Reuse settings puts the board's inputs back into a changed form.
        page.fill("#story", "Something else entirely.")
        page.fill("#character", "an old man")
        page.fill("#style", "watercolour")
        page.fill("#seed", "")
        page.fill("#frames", "3")
        page.select_option("#preset", "quality")
        page.select_option("#aspect", "1:1")
        page.set_checked("#identity-lock", not settings["identity_lock"])
        page.click("#reuse")
        expect(page.locator("#story")).to_have_value(first["story"])
        expect(page.locator("#character")).to_have_value(first["character"])
        expect(page.locator("#style")).to_have_value(first["style"])
        expect(page.locator("#seed")).to_have_value("42")
        expect(page.locator("#frames")).to_have_value("6")
        expect(page.locator("#preset")).to_have_value(settings["preset"])
        expect(page.locator("#aspect")).to_have_value(settings["aspect"])
        assert page.is_checked("#identity-lock") == settings["identity_lock"]
        expect(page.locator("#reuse-note")).to_be_hidden()  # the reference was drawn, not uploaded

        # Opening a board from far down the history brings it into view.
        history_open = page.locator(f"#history .history-item[data-id='{board_id}'] .history-open")
        history_open.scroll_into_view_if_needed()
        assert page.evaluate(TOP_OF, "#board-title") < 0, "the test needs the board out of view"
        history_open.click()
        expect(page.locator("#board-title")).to_be_in_viewport()

        # Nothing went wrong in the page, and nothing was executed from the story.
        watch.assert_clean()
        assert page.evaluate("[...document.querySelectorAll('*')].flatMap((node) => [...node.attributes])"
                             ".filter((a) => a.name.startsWith('on')).map((a) => a.name)") == []

        # The screenshot of the finished board (also used by the README), once the history
        # entry has caught up (it refreshes a moment after the last change).
        history_item = page.locator(f"#history .history-item[data-id='{board_id}']")
        expect(history_item.locator(".status-dot")).to_have_text("done")
        page.wait_for_function(
            """(id) => {
                 const img = document.querySelector(`#history .history-item[data-id="${id}"] img.history-thumb`);
                 return img && img.complete && img.naturalWidth > 0;
               }""", arg=board_id, timeout=TIMEOUT_MS)
        page.evaluate("document.getElementById('story').scrollTop = 0; document.activeElement.blur();"
                      "window.scrollTo(0, 0)")
        page.mouse.move(0, 0)  # no hover highlight left on the last clicked button
        shot = artifacts / "board.png"
        page.screenshot(path=str(shot), full_page=True)  # 1280 wide; the whole board
        if os.environ.get("UPDATE_SCREENSHOT"):  # the tests never write into the source tree unasked
            _save_small_png(shot, DOCS_SCREENSHOT)
            assert DOCS_SCREENSHOT.stat().st_size < 400_000
    except Exception as error:
        raise AssertionError(f"{error}\n--- what the server says ---\n{_server_state(page)}") from error
    finally:
        watch.close()
    print(f"browser test: {time.monotonic() - started:.1f} s")


# --- A cast of two, through the page -------------------------------------------------------

CAST_LINES = [
    "Mara wakes at the lighthouse.",
    "Ilya knocks at the door.",
    "Mara and Ilya study the map.",
    "A storm rolls over the sea.",
    "Ilya rows the boat while Mara steers.",
    "They reach the island.",
]
CAST_OF_LINES = [["Mara"], ["Ilya"], ["Mara", "Ilya"], ["Mara"], ["Mara", "Ilya"], ["Mara"]]  # who each names
MARA = "young woman, oval face, red hair, green jacket"
ILYA = "old man, square face, grey beard, navy coat"
# How the panel details word a character's status.
CHARACTER_STATUS_WORDS = {"match": "match", "drift": "drift", "missing": "missing (no face found for them)",
                          "no_reference_face": "no reference face"}

# The names on each panel's chips, in board order.
CAST_CHIPS = """
() => [...document.querySelectorAll("#board .panel")].map((panel) =>
  [...panel.querySelectorAll(".panel-cast .cast-chip")].map((chip) => chip.textContent))
"""
# The ticked choices of a "who is in it" picker.
PICKED = """
(selector) => [...document.querySelectorAll(`${selector} .cast-choice`)]
  .filter((label) => label.querySelector("input").checked).map((label) => label.textContent)
"""
CAST_VIEW_LOADED = """
(count) => {
  const images = [...document.querySelectorAll("#cast-view .cast-member img")];
  return images.length === count && images.every((img) => img.complete && img.naturalWidth > 0);
}
"""


def _cast_row(page, n: int):
    return page.locator(f"#cast-rows .cast-row:nth-child({n})")


def test_a_cast_of_two_through_the_page(browser, server, artifacts):
    """A six-panel story with Mara (an uploaded face) and Ilya (a drawn portrait): the cast
    editor and its errors on their row, the panels' cast chips, both references in the
    board's header, per-character scores in the details, one panel's cast edited to Ilya
    alone and redrawn, Reuse settings, and a plan whose rows say who is in each panel."""
    from helpers import png_bytes
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    api = page.request
    try:
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        rows, error = page.locator("#cast-rows .cast-row"), page.locator("#error")
        # Alone, the character is the form as before the cast: no name needed, nothing to remove.
        expect(rows).to_have_count(1)
        expect(page.locator("#cast-legend")).to_have_text("Main character")
        expect(_cast_row(page, 1).locator(".cast-remove")).to_be_hidden()
        page.fill("#story", "\n".join(CAST_LINES))
        page.select_option("#preset", "ultra_fast")
        page.fill("#seed", "11")
        page.fill("#character-name", "Mara")
        page.fill("#character", MARA)
        page.set_input_files("#reference", files=[{"name": "mara.png", "mimeType": "image/png",
                                                   "buffer": png_bytes((64, 64), "tan")}])
        expect(page.locator("#reference-preview")).to_be_visible()

        # A second character: empty traits with the face-first placeholder, and a name needed.
        page.click("#cast-add")
        expect(rows).to_have_count(2)
        expect(page.locator("#cast-legend")).to_have_text("Cast (2 of 4)")
        expect(page.locator("#character-name-2")).to_be_focused()
        expect(page.locator("#character-2")).to_have_value("")
        expect(page.locator("#character-2")).to_have_attribute("placeholder", re.compile("^Face first"))
        boards_before = len(api.get("/api/storyboards").json()["storyboards"])
        page.click("#generate")
        expect(error).to_contain_text("Character 2 needs a name")
        expect(page.locator("#character-name-2")).to_be_focused()
        expect(_cast_row(page, 2)).to_have_class(re.compile(r"\binvalid\b"))
        page.keyboard.type("mara")
        expect(error).to_have_text("")
        expect(_cast_row(page, 2)).not_to_have_class(re.compile(r"\binvalid\b"))

        # The server's errors land on their row and field, and go with an edit: a name taken
        # (ignoring case), then a face it refuses (reference_2 in the form: a GIF, which the
        # page can show but the studio does not take).
        page.fill("#character-2", ILYA)
        page.click("#generate")
        expect(error).to_contain_text("Two characters are called")
        expect(page.locator("#character-name-2")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#cast-rows .cast-row.invalid")).to_have_count(1)
        expect(_cast_row(page, 2)).to_have_class(re.compile(r"\binvalid\b"))
        page.fill("#character-name-2", "Ilya")
        expect(error).to_have_text("")
        page.set_input_files("#reference-2", files=[{"name": "ilya.png", "mimeType": "image/png",
                                                     "buffer": png_bytes((64, 64), "tan", fmt="GIF")}])
        expect(page.locator("#reference-preview-2")).to_be_visible()
        page.click("#generate")
        expect(error).to_contain_text("not GIF")
        expect(page.locator("#reference-2")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#reference-2")).to_be_focused()
        expect(_cast_row(page, 2)).to_have_class(re.compile(r"\binvalid\b"))
        _cast_row(page, 2).locator(".face-remove").click()
        expect(error).to_have_text("")
        expect(page.locator("#reference-2")).not_to_have_attribute("aria-invalid", "true")
        assert len(api.get("/api/storyboards").json()["storyboards"]) == boards_before

        # Generate, with the consistent look: six panels, each showing who its line names; the
        # header shows both faces.
        page.check("#consistent-look")
        page.click("#generate")
        expect(page.locator("#board .panel")).to_have_count(6)
        page.wait_for_function(ALL_PANELS_LOADED, arg=6, timeout=BOARD_TIMEOUT_MS)
        expect(page.locator("#board-status")).to_have_text("done")
        board_id = in_page(page, "return m.state.boardId;")
        board = api.get(f"/api/storyboards/{board_id}").json()
        assert [(c["name"], c["traits"]) for c in board["characters"]] == [("Mara", MARA), ("Ilya", ILYA)]
        assert [c["reference"]["kind"] for c in board["characters"]] == ["uploaded", "generated"]
        assert [f["cast"] for f in board["frames"]] == CAST_OF_LINES
        _poll(lambda: page.evaluate(CAST_CHIPS) == CAST_OF_LINES, message="the cast chips")
        members = page.locator("#cast-view .cast-member")
        expect(members.locator(".cast-member-name")).to_have_text(["Mara", "Ilya"])
        expect(members.locator(".cast-member-kind")).to_have_text(["uploaded face", "generated portrait"])
        page.wait_for_function(CAST_VIEW_LOADED, arg=2, timeout=TIMEOUT_MS)
        urls = [c["reference"]["image_url"] for c in board["characters"]]
        assert members.locator("img").evaluate_all("images => images.map((img) => img.getAttribute('src'))") == urls
        page.screenshot(path=str(artifacts / "cast-board.png"), full_page=True)

        # A portrait the stream announces takes its character's place (here Ilya's, replayed).
        in_page(page, "m.state.board.characters[1].reference = {kind: null, image_url: null}; m.renderAll();")
        expect(members.nth(1).locator(".cast-member-kind")).to_have_text("no reference")
        expect(members.nth(1).locator("img")).to_have_count(0)
        in_page(page, "m.onReferenceEvent(arg);",
                      {"character": 2, "name": "Ilya", "kind": "generated", "image_url": urls[1]})
        expect(members.nth(1).locator("img")).to_have_attribute("src", urls[1])
        expect(members.locator(".cast-member-kind")).to_have_text(["uploaded face", "generated portrait"])

        # The details of a panel with both: who is in it, and each one's score by name.
        page.locator("#board .panel[data-index='3'] .panel-open").click()
        details = page.evaluate(DIALOG_DETAILS)
        assert details["Who is in it"] == "Mara, Ilya"
        assert board["settings"]["consistent_look"] is True
        assert details["Consistent look"] == "on: shared with the reference pictures of Mara and Ilya (50% of the tokens)"
        scores = board["frames"][2]["identity"]["characters"]
        assert [s["name"] for s in scores] == ["Mara", "Ilya"]
        expect(page.locator("#panel-dialog-details .identity-characters li")).to_have_text([
            f"{s['name']}: {CHARACTER_STATUS_WORDS[s['status']]}"
            + (f", CLIP {s['clip_similarity']:.2f}" if s.get("clip_similarity") is not None else "")
            for s in scores])  # the tiny models draw no faces: no distance, nothing made up
        page.keyboard.press("Escape")

        # Edit panel 3's cast to Ilya alone: it is redrawn with him only; the others keep theirs.
        panel3 = page.locator("#board .panel[data-index='3']")
        panel3.locator(".edit").click()
        picker = "#board .panel[data-index='3'] .cast-picker"
        assert page.evaluate(PICKED, picker) == ["Mara", "Ilya"]
        panel3.locator(".cast-choice", has_text="Mara").locator("input").uncheck()
        assert page.evaluate(PICKED, picker) == ["Ilya"]
        panel3.screenshot(path=str(artifacts / "cast-edit.png"))
        panel3.locator(".edit-form button[type='submit']").click()
        recast = _poll(lambda: (b := api.get(f"/api/storyboards/{board_id}").json())["status"] == "done"
                       and b["frames"][2]["cast"] == ["Ilya"] and all(f["status"] == "done" for f in b["frames"])
                       and b, timeout=BOARD_TIMEOUT_MS / 1000, message="panel 3 to be redrawn with Ilya alone")
        assert [f["cast"] for f in recast["frames"]] == [["Mara"], ["Ilya"], ["Ilya"], ["Mara"], ["Mara", "Ilya"],
                                                         ["Mara"]]
        assert recast["frames"][2]["prompt"].startswith(ILYA)  # no "left: ...; right: ..." any more
        expect(panel3.locator(".cast-chip")).to_have_text(["Ilya"])
        page.wait_for_function(ALL_PANELS_LOADED, arg=6, timeout=TIMEOUT_MS)

        # Reuse settings brings the cast's names and traits back; the uploaded face is to be chosen again.
        _cast_row(page, 2).locator(".cast-remove").click()
        expect(rows).to_have_count(1)
        page.fill("#character-name", "")
        page.fill("#character", "an old sailor")
        page.click("#reuse")
        expect(rows).to_have_count(2)
        assert page.eval_on_selector_all("#cast-rows .cast-row", """rows => rows.map((row) =>
            [row.querySelector(".cast-name").value, row.querySelector(".cast-traits").value])""") == [
            ["Mara", MARA], ["Ilya", ILYA]]
        expect(page.locator("#reuse-note")).to_be_visible()  # Mara's face was uploaded
        expect(page.locator("#reuse-note-2")).to_be_hidden()  # Ilya's was drawn
        expect(page.locator("#reference-preview")).to_be_hidden()

        # Plan with the cast: every row says who is in it, as the planner does; row 4 is set to
        # no one, rows 5 and 6 go, and the plan is drawn with those casts.
        page.click("#plan")
        plan_rows = page.locator("#plan-rows .plan-row")
        expect(plan_rows).to_have_count(6)
        planned = api.post("/api/plans", data={"premise": "\n".join(CAST_LINES), "characters": [
            {"name": "Mara", "traits": MARA}, {"name": "Ilya", "traits": ILYA}]}).json()
        assert [p["cast"] for p in planned["panels"]] == CAST_OF_LINES
        assert [page.evaluate(PICKED, f"#plan-rows .plan-row:nth-child({n}) .cast-picker")
                for n in range(1, 7)] == CAST_OF_LINES
        _plan_row(page, 4).locator(".cast-choice", has_text="no one").locator("input").check()
        assert page.evaluate(PICKED, "#plan-rows .plan-row:nth-child(4) .cast-picker") == ["no one"]
        page.locator("#plan-editor").screenshot(path=str(artifacts / "cast-plan.png"))
        _plan_row(page, 6).locator(".plan-delete").click()
        _plan_row(page, 5).locator(".plan-delete").click()
        expect(plan_rows).to_have_count(4)
        page.click("#draw-plan")
        expect(page.locator("#board .panel")).to_have_count(4)
        page.wait_for_function(ALL_PANELS_LOADED, arg=4, timeout=BOARD_TIMEOUT_MS)
        expect(page.locator("#board-status")).to_have_text("done")
        drawn = api.get(f"/api/storyboards/{in_page(page, 'return m.state.boardId;')}").json()
        assert [f["cast"] for f in drawn["frames"]] == [["Mara"], ["Ilya"], ["Mara", "Ilya"], []]
        assert [c["reference"]["kind"] for c in drawn["characters"]] == ["generated", "generated"]
        _poll(lambda: page.evaluate(CAST_CHIPS) == [["Mara"], ["Ilya"], ["Mara", "Ilya"], ["no one"]],
              message="the plan's cast chips")
        page.click("#plan-discard")
        watch.assert_clean(answered=(400,))
    except Exception as error:
        raise AssertionError(f"{error}\n--- what the server says ---\n{_server_state(page)}") from error
    finally:
        watch.close()


def test_text_the_pdf_cannot_draw_is_said_beside_its_link(browser, server):
    """A caption in a script no font here has (Tibetan): the PDF leaves it out and says so at its
    top, and the page says the same by the PDF link, before anyone downloads it."""
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    try:
        answer = page.request.post("/api/storyboards", data={"story": "བཀྲ་ཤིས་བདེ་ལེགས", "frames": 1,
                                                             "preset": "draft", "seed": 3})
        assert answer.ok, answer.text()
        page.goto(f"/#board={answer.json()['id']}")
        notice = page.locator("#export-pdf-notice")
        expect(notice).to_be_visible(timeout=TIMEOUT_MS)
        expect(notice).to_have_text("Text in Tibetan cannot be drawn with the fonts on this machine and is "
                                    "missing from the PDF.")
        watch.assert_clean()
    finally:
        watch.close()


def test_a_panels_dialogue_is_edited_in_its_edit_form_without_drawing_it_again(browser, server):
    """The panel's Edit has its dialogue: a change of it alone is saved (the button says Save) and
    shown under the caption, with no new take; with the text changed too, it is saved and redrawn."""
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    api = page.request
    try:
        answer = api.post("/api/storyboards", data={"story": "A door in the dark.", "frames": 1,
                                                    "preset": "draft", "seed": 3})
        assert answer.ok, answer.text()
        board_url = answer.json()["links"]["self"]
        done = _poll(lambda: (b := api.get(board_url).json())["status"] == "done" and b,
                     timeout=BOARD_TIMEOUT_MS / 1000, message="the board to be drawn")
        page.goto(f"/#board={done['id']}")
        panel = page.locator("#board .panel[data-index='1']")
        panel.locator(".edit").click()
        submit = panel.locator(".edit-form button[type='submit']")
        expect(submit).to_have_text("Redraw")
        panel.locator(".edit-dialogue").fill("MARA: Who is there?")
        expect(submit).to_have_text("Save")
        submit.click()
        expect(panel.locator(".edit-form")).to_have_count(0)
        expect(panel.locator(".panel-dialogue")).to_have_text("MARA: Who is there?")
        saved = api.get(board_url).json()["frames"][0]
        assert saved["dialogue"] == "MARA: Who is there?" and len(saved["takes"]) == len(done["frames"][0]["takes"])

        panel.locator(".edit").click()
        expect(panel.locator(".edit-dialogue")).to_have_value("MARA: Who is there?")
        panel.locator(".edit-dialogue").fill("")
        panel.locator(".edit-caption").fill("A door opens in the dark.")
        expect(submit).to_have_text("Redraw")
        submit.click()
        redrawn = _poll(lambda: (b := api.get(board_url).json())["status"] == "done"
                        and len(b["frames"][0]["takes"]) > len(saved["takes"]) and b["frames"][0],
                        timeout=BOARD_TIMEOUT_MS / 1000, message="the panel to be redrawn")
        assert (redrawn["caption"], redrawn["dialogue"]) == ("A door opens in the dark.", "")
        expect(panel.locator(".panel-dialogue")).to_have_count(0)
        watch.assert_clean()
    finally:
        watch.close()


def test_an_unreadable_face_is_said_on_its_field_not_shown_broken(browser, server):
    """A file that is not a picture, or a broken PNG, chosen as a face: the page says which
    field cannot be read, instead of showing a broken image, and sends nothing."""
    from helpers import png_bytes
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    try:
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        error = page.locator("#error")
        broken_png = png_bytes((64, 64), "tan")[:60]  # the signature and header, the pixels cut off
        for face, field, preview, name, what in (
                ("#reference", "The reference face", "#reference-preview", "notes.png", b"not an image at all"),
                ("#reference", "The reference face", "#reference-preview", "cut.png", broken_png),
                ("#reference-2", "Character 2's reference face", "#reference-preview-2", "cut.png", broken_png)):
            if face == "#reference-2":
                page.click("#cast-add")
            page.set_input_files(face, files=[{"name": name, "mimeType": "image/png", "buffer": what}])
            expect(error).to_have_text(f"{field} ({name}) cannot be read as an image: choose a PNG, JPEG or "
                                       "WebP image.")
            expect(page.locator(face)).to_have_attribute("aria-invalid", "true")
            expect(page.locator(face)).to_be_focused()
            expect(page.locator(preview)).to_be_hidden()
            assert page.eval_on_selector(face, "(input) => input.files.length") == 0  # nothing is sent
            # A readable face settles it, and shows.
            page.set_input_files(face, files=[{"name": "face.png", "mimeType": "image/png",
                                               "buffer": png_bytes((64, 64), "tan")}])
            expect(error).to_have_text("")
            expect(page.locator(preview)).to_be_visible()
            expect(page.locator(f"{preview} img")).to_have_js_property("naturalWidth", 64)
        watch.assert_clean()
    finally:
        watch.close()


def test_phone_layout_has_no_horizontal_scroll(browser, server, artifacts):
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 390, "height": 844}, is_mobile=True,
                      has_touch=True, device_scale_factor=2)
    page = watch.page
    try:
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        # Functions, not expressions: Playwright polls an expression with eval, which the CSP forbids.
        page.wait_for_function("() => document.querySelector('#history .history-item')"
                               " || !document.getElementById('history-empty').hidden")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, "the empty page is too wide"
        # Open the newest board (the first test's), so the panels are in the layout too.
        items = page.locator("#history .history-item .history-open")
        if items.count():
            page.evaluate("document.getElementById('history-section').open = true")
            items.first.click()
            expect(page.locator("#board .panel").first).to_be_visible()
            page.wait_for_function("() => [...document.querySelectorAll('#board img.panel-image')]"
                                   ".every((img) => img.complete)")
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(artifacts / "phone.png"), full_page=True)
        assert width <= 390 + 1, f"the page scrolls sideways on a phone: scrollWidth {width}"
        watch.assert_clean()
    finally:
        watch.close()


def test_the_page_says_how_far_the_warm_up_is_and_boards_are_drawn_meanwhile(browser, tiny_settings_factory,
                                                                             artifacts):
    from playwright.sync_api import expect

    from app import create_app
    from backend import default_generator_loader
    from fakes import Warming

    settings = tiny_settings_factory(preload=True)
    model, load = Warming(graphs=5, hold=3), default_generator_loader(settings)  # the real tiny generator
    with _serving(create_app(settings, load_generator=lambda: model.around(load()))) as url:
        watch = PageWatch(browser, url, viewport={"width": 1280, "height": 900})
        page = watch.page
        try:
            assert model.held.wait(BOARD_TIMEOUT_MS / 1000)
            page.goto("/")
            banner = page.locator("#health-banner")
            expect(banner).to_contain_text("Warming up the compiled model for this GPU: 2 of 5 panel shapes "
                                           "ready, about ", timeout=BOARD_TIMEOUT_MS)
            expect(banner).to_contain_text("Boards are drawn meanwhile, more slowly until then")
            page.fill("#story", "A fox finds a map.\nThe fox climbs a hill.")
            page.click("#generate")
            page.screenshot(path=str(artifacts / "warming-up.png"), full_page=True)
            model.go.set()  # the held graph is done: the board is drawn before the last two
            expect(page.locator("#board-status")).to_have_text("done", timeout=BOARD_TIMEOUT_MS)
            expect(banner).to_be_hidden(timeout=BOARD_TIMEOUT_MS)
            assert model.log[:4] == ["compile", "compile", "compile", "board"]
            watch.assert_clean()
        finally:
            model.go.set()
            watch.close()


class HeldAtFirstPreview:
    """The real tiny generator, held right after its first panel preview until ``go``."""

    def __init__(self):
        self.generator, self.held, self.go = None, threading.Event(), threading.Event()

    def around(self, generator) -> "HeldAtFirstPreview":
        self.generator = generator
        return self

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def generate(self, request, on_preview=None, **kwargs):
        def preview(job, step, steps, image):
            first = not self.held.is_set()
            self.held.set()  # before the page can see it
            on_preview(job, step, steps, image)
            if first:
                assert self.go.wait(BOARD_TIMEOUT_MS / 1000), "the test never let the generator go on"

        return self.generator.generate(request, on_preview=preview if on_preview else None, **kwargs)


def test_a_panel_shows_its_live_preview_before_its_image(browser, tiny_settings_factory, artifacts):
    from playwright.sync_api import expect

    from app import create_app
    from backend import default_generator_loader

    settings = tiny_settings_factory()
    model, load = HeldAtFirstPreview(), default_generator_loader(settings)  # the real tiny generator

    with _serving(create_app(settings, load_generator=lambda: model.around(load()))) as url:
        watch = PageWatch(browser, url, viewport={"width": 1280, "height": 900})
        page = watch.page
        try:
            page.goto("/")
            page.fill("#story", "A fox finds a map.\nThe fox climbs a hill.")
            page.click("#generate")
            first = page.locator("#board .panel").first
            preview = first.locator(".panel-placeholder img.panel-preview")
            expect(preview).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"), timeout=BOARD_TIMEOUT_MS)
            expect(preview).to_have_attribute("alt", re.compile(r"^Panel 1 forming: step 1 of \d+$"))
            expect(first.locator(".panel-status")).to_have_text(re.compile(r"^drawing… step 1/\d+$"))
            assert model.held.is_set() and first.locator(".panel-image").count() == 0
            page.screenshot(path=str(artifacts / "live-preview.png"), full_page=True)
            model.go.set()
            expect(page.locator("#board-status")).to_have_text("done", timeout=BOARD_TIMEOUT_MS)
            expect(first.locator(".panel-image")).to_be_visible()
            expect(page.locator("#board .panel-preview")).to_have_count(0)
            watch.assert_clean()
        finally:
            model.go.set()
            watch.close()


def test_refine_on_the_board_gives_every_panel_a_take_in_the_chosen_mode(browser, tiny_settings_factory):
    """The board's Refine (its links.refine) appears once the board is drawn, offers the modes
    /api/presets says a refine takes, and adds a take, in the chosen mode at the default
    strength, to each panel, which then shows it."""
    from playwright.sync_api import expect

    from app import create_app
    from fakes import FakeGenerator

    settings = tiny_settings_factory(refine_strength=0.5)
    with _serving(create_app(settings, load_generator=FakeGenerator)) as url:
        watch = PageWatch(browser, url, viewport={"width": 1280, "height": 900})
        page = watch.page
        try:
            page.goto("/")
            _draw_board(page, "A fox finds a map.\nThe fox climbs a hill.", 2)
            expect(page.locator("#refine-preset option")).to_have_text(["Fast", "Balanced", "Quality"])
            expect(page.locator("#refine-preset")).to_have_value("quality")
            expect(page.locator("#refine")).to_have_attribute("title", re.compile(r"strength 0\.5\b"))
            page.select_option("#refine-preset", "balanced")
            with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/refine")) as sent:
                page.click("#refine")
            assert sent.value.post_data_json == {"preset": "balanced"}  # the strength: the server's default
            panels = page.locator("#board .panel")
            expect(panels).to_have_count(2)
            for i in range(2):
                expect(panels.nth(i).locator(".take-count")).to_have_text("2/2", timeout=BOARD_TIMEOUT_MS)
            expect(page.locator("#board-status")).to_have_text("done", timeout=BOARD_TIMEOUT_MS)
            expect(page.locator("#refine-board")).to_be_visible()
            board_id = _open_board_id(page)
            board = json.loads(page.request.get(f"/api/storyboards/{board_id}").text())
            for frame in board["frames"]:
                first, refined = frame["takes"]
                assert (frame["take"], refined["mode"], refined["parent"]) == (refined["id"], "balanced", first["id"])
            watch.assert_clean()
        finally:
            watch.close()


def test_the_animatic_downloads_as_an_mp4_and_a_storyboarder_project_imports_back(browser, tiny_settings_factory,
                                                                                    tmp_path):
    """The board's animatic is written on the server with its progress shown, then downloaded:
    an H.264 MP4 with a frame per 1/24 s of the board and a caption track. The editors' formats
    are links from the board's answer; its Storyboarder project, chosen in the form, comes back
    as a new board with the same captions."""
    import av
    from playwright.sync_api import expect

    from app import create_app
    from fakes import FakeGenerator

    with _serving(create_app(tiny_settings_factory(), load_generator=FakeGenerator)) as url:
        watch = PageWatch(browser, url, viewport={"width": 1280, "height": 900})
        page = watch.page
        try:
            page.goto("/")
            board_id = _draw_board(page, "A fox finds a map.\nЛиса поднимается на холм.", 2)
            board = json.loads(page.request.get(f"/api/storyboards/{board_id}").text())
            expect(page.locator("#export-edl")).to_have_attribute("href", board["export"]["edl"])
            expect(page.locator("#export-storyboarder")).to_have_attribute("download",
                                                                           f"storyboard-{board_id}.storyboarder.zip")

            page.click("#export-animatic")
            expect(page.locator("#animatic-export")).to_be_visible()
            page.check("#animatic-burn-in")
            with page.expect_download(timeout=BOARD_TIMEOUT_MS) as download:
                page.click("#animatic-start")
            assert download.value.suggested_filename == f"storyboard-{board_id}.mp4"
            expect(page.locator("#animatic-status")).to_have_text("Written.")
            expect(page.locator("#animatic-download")).to_be_visible()
            path = tmp_path / "animatic.mp4"
            download.value.save_as(path)
            with av.open(str(path)) as container:
                assert container.streams.video[0].codec_context.name == "h264"
                assert container.streams.subtitles[0].codec_context.name == "mov_text"
                frames = sum(1 for _ in container.decode(video=0))
            assert frames == round(board["duration"] * 24)

            project = tmp_path / "project.zip"
            project.write_bytes(page.request.get(board["export"]["storyboarder"]).body())
            page.set_input_files("#import-storyboarder", str(project))
            page.wait_for_function("id => !location.hash.endsWith(encodeURIComponent(id))", arg=board_id)
            expect(page.locator("#board .panel .panel-caption")).to_have_text(
                ["A fox finds a map.", "Лиса поднимается на холм."])
            watch.assert_clean()
        finally:
            watch.close()


class HeldAtEachPanel:
    """The real tiny generator, held right after the first step of every panel it draws (its
    progress sent) until the test lets it go on (``go.release()``); ``held`` counts the holds."""

    def __init__(self):
        self.generator, self.held, self.go = None, threading.Semaphore(0), threading.Semaphore(0)

    def around(self, generator) -> "HeldAtEachPanel":
        self.generator = generator
        return self

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def generate(self, request, on_progress=None, **kwargs):
        def progress(job, step, steps):
            on_progress(job, step, steps)
            if step == 1 and job.portrait_of is None:
                self.held.release()
                assert self.go.acquire(timeout=BOARD_TIMEOUT_MS / 1000), "the test never let the generator go on"

        return self.generator.generate(request, on_progress=progress if on_progress else None, **kwargs)


def test_the_panel_drawn_shows_as_running_and_a_redrawn_one_keeps_its_image(browser, tiny_settings_factory,
                                                                            artifacts):
    """Without live previews the panel being drawn still shows as such (queued, running, done);
    a redrawn panel keeps its old image, dimmed, under its status until the new one comes."""
    from playwright.sync_api import expect

    from app import create_app
    from backend import default_generator_loader

    settings = tiny_settings_factory(live_previews=False)
    model, load = HeldAtEachPanel(), default_generator_loader(settings)  # the real tiny generator

    def held():
        assert model.held.acquire(timeout=BOARD_TIMEOUT_MS / 1000), \
            "the generator never reached a panel"

    with _serving(create_app(settings, load_generator=lambda: model.around(load()))) as url:
        watch = PageWatch(browser, url, viewport={"width": 1280, "height": 900})
        page = watch.page
        try:
            page.goto("/")
            page.fill("#story", "A fox finds a map.\nThe fox climbs a hill.")
            page.click("#generate")
            panels = page.locator("#board .panel")
            first, second = panels.nth(0), panels.nth(1)
            held()  # panel 1 is being drawn: it says so, panel 2 waits
            expect(first).to_have_attribute("data-status", "running")
            expect(first.locator(".panel-status")).to_have_text(re.compile(r"^drawing… step 1/\d+$"))
            expect(second).to_have_attribute("data-status", "queued")
            expect(second.locator(".panel-status")).to_have_text("queued")
            model.go.release()
            held()  # then panel 2, panel 1 drawn
            expect(second).to_have_attribute("data-status", "running")
            expect(first).to_have_attribute("data-status", "done")
            model.go.release()
            expect(page.locator("#board-status")).to_have_text("done", timeout=BOARD_TIMEOUT_MS)
            page.wait_for_function(ALL_PANELS_LOADED, arg=2, timeout=TIMEOUT_MS)
            old = first.locator(".panel-image").get_attribute("src")

            # Redraw panel 1: its image stays, dimmed, under "queued", then "drawing…", until the new one.
            first.locator(".redraw").click()
            held()
            previous = first.locator("img.panel-previous")
            expect(first).to_have_attribute("data-status", "running")
            expect(previous).to_have_attribute("src", old)
            expect(previous).to_be_visible()
            assert float(previous.evaluate("(img) => getComputedStyle(img).opacity")) < 1
            status = first.locator(".panel-status")
            expect(status).to_have_text(re.compile(r"^drawing… step 1/\d+$"))
            expect(status).to_be_visible()
            assert first.locator(".panel-image").count() == 0
            first.screenshot(path=str(artifacts / "redraw-keeps-image.png"))
            model.go.release()
            image = first.locator(".panel-image")
            _poll(lambda: image.count() and image.get_attribute("src") != old, BOARD_TIMEOUT_MS / 1000,
                  "the redrawn image")
            expect(first).to_have_attribute("data-status", "done")
            expect(previous).to_have_count(0)
            watch.assert_clean()
        finally:
            model.go.release(100)
            watch.close()


def test_a_model_that_cannot_load(browser, broken_server, artifacts):
    """Loading is announced honestly, the load error shows once, in full, and the board resumes.
    The same page then checks what no real board here produces: notices, progress with a
    ``fraction`` that goes back, a mode described by the server, and a board drawn without
    the identity lock (fabricated board data passed to the page's own render functions)."""
    from playwright.sync_api import expect

    url, model = broken_server
    watch = PageWatch(browser, url, viewport={"width": 1280, "height": 900})
    page = watch.page
    try:
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        banner = page.locator("#health-banner")
        expect(banner).to_be_hidden()
        page.fill("#story", "A girl finds a map.\nShe climbs the hill.\nA storm breaks.")
        page.click("#generate")

        # While the model loads, the banner says what that involves: nothing to download here.
        loading = page.request.get("/api/health").json()["loading_message"]
        assert "GB" not in loading
        expect(banner).to_have_text(loading, timeout=BOARD_TIMEOUT_MS)
        model.release.set()

        # The long error: once, in full, in the banner; the board and its panels say it short.
        expect(page.locator("#board-status")).to_have_text("failed", timeout=BOARD_TIMEOUT_MS)
        expect(banner).to_contain_text(LOAD_ERROR)
        page.wait_for_function("(text) => document.body.innerText.split(text).length === 2", arg=LOAD_ERROR)
        assert page.evaluate("document.body.innerText.split('the hub cannot be reached').length") == 2
        expect(page.locator("#board-message")).to_contain_text("could not be loaded")
        expect(page.locator("#board-message")).to_contain_text("Fix what the message at the top says, then Resume")
        expect(page.locator("#board .panel .panel-status")).to_have_text(["not drawn"] * 3)
        expect(page.locator("#board .panel-error")).to_have_count(0)
        for selector in ("#health-banner", "#board-message", "#board .panel-placeholder", "#board .panel-body"):
            overflowing = page.eval_on_selector_all(
                selector, "nodes => nodes.filter(n => n.scrollWidth > n.clientWidth + 1"
                          " || n.scrollHeight > n.clientHeight + 1).length")
            assert overflowing == 0, f"{selector} overflows its box"
        page.screenshot(path=str(artifacts / "model-error.png"), full_page=True)

        # Resume is offered, and tries again (the model fails again, and Resume is back).
        resume = page.locator("#resume")
        expect(resume).to_be_visible()
        resume.click()
        _poll(lambda: model.calls == 2, message="the worker to try loading the model again")
        expect(page.locator("#board-status")).to_have_text("failed", timeout=BOARD_TIMEOUT_MS)
        expect(resume).to_be_visible()
        page.wait_for_function("(text) => document.body.innerText.split(text).length === 2", arg=LOAD_ERROR)

        # The backend's short panel error for a board that failed as a whole is not repeated either.
        in_page(page, """m.state.board.frames = m.state.board.frames.map(
                          (f) => ({...f, error: "Not drawn: the storyboard failed."})); m.renderAll();""")
        expect(page.locator("#board .panel .panel-status")).to_have_text(["not drawn"] * 3)
        expect(page.locator("#board .panel-error")).to_have_count(0)

        # Notices above the board: this board's three lines override the form's panel count.
        board_id = in_page(page, "return m.state.board.id;")
        notices = page.request.get(f"/api/storyboards/{board_id}").json()["notices"]
        assert notices and "3 lines" in notices[0]
        expect(page.locator("#board-notices li")).to_have_text(notices)

        # The bar follows `fraction`, never back within a job, and shows the label; a new job starts at 0.
        # The real board's event stream is closed first: its status events would race the fabricated ones;
        # and the page is moved to a board id of its own, so that a reload of the real board still in
        # flight (sent on its final status event) drops its answer instead of overwriting these.
        held = []  # forces that interleaving: a reload of the real board answered after the fabrication
        page.route(f"**/api/storyboards/{board_id}", lambda route: held.append(route))
        in_page(page, "m.reloadBoard();")
        # (sync Playwright runs the route handler only inside its own calls: the check makes one)
        _poll(lambda: page.evaluate("() => true") and held, message="the page to ask for the board again")
        in_page(page, "m.closeEvents(); m.state.boardId = 'fabricated'; m.state.board.status = 'queued';"
                      " m.state.board.progress = null; m.newJob(); m.renderAll();")
        bar, text = page.locator("#progress-bar"), page.locator("#progress-text")
        held[0].continue_()
        page.unroute(f"**/api/storyboards/{board_id}")

        def progress(p: dict) -> float:
            in_page(page, "m.onProgressEvent(arg);", p)
            return float(bar.get_attribute("value"))

        assert progress({"fraction": 0.5, "panel": 2, "of": 3, "label": "Panel 2 of 3", "step": 3, "steps": 10,
                         "eta_s": 4}) == 0.5
        expect(text).to_have_text("Panel 2 of 3 · step 3 of 10 · about 4 s left")
        assert progress({"fraction": 0.3, "panel": 0, "of": 3, "label": "Character reference", "step": 1,
                         "steps": 10}) == 0.5
        expect(text).to_have_text("Character reference · step 1 of 10")
        # Without `fraction`: worked out, the reference this job drew counted as one more panel.
        assert progress({"panel": 3, "of": 3, "step": 5, "steps": 10}) == pytest.approx(3.5 / 4)
        in_page(page, "m.onStatusEvent({status: 'queued', error: null});")  # the job ended; the next waits
        assert progress({"fraction": 0.1, "panel": 1, "of": 3, "label": "Panel 1 of 3", "step": 1,
                         "steps": 10}) == 0.1

        # A mode with the server's description shows it; one without shows its numbers. Presets
        # that arrive late keep what the user set.
        page.fill("#frames", "3")
        page.set_checked("#identity-lock", False)
        in_page(page, """m.state.presets = {...m.state.presets, presets: [
            {name: "lightning", label: "Lightning", steps: 4, guidance_scale: 0, ip_adapter_scale: 0.5,
             description: "4 steps, no CFG"},
            {name: "fast", label: "Fast", steps: 12, guidance_scale: 6.5, ip_adapter_scale: 0.5}]};
            m.renderPresetOptions(m.state.presets);""")
        page.select_option("#preset", "lightning")
        expect(page.locator("#preset-hint")).to_have_text("4 steps, no CFG · IP-Adapter scale 0.50")
        expect(page.locator("#frames")).to_have_value("3")
        assert not page.is_checked("#identity-lock")
        page.select_option("#preset", "fast")
        expect(page.locator("#preset-hint")).to_have_text("12 steps · CFG 6.5 · IP-Adapter scale 0.50")

        # What a prompt left out to fit CLIP is said on the panel, in view (not in a tooltip).
        in_page(page, """m.state.board.frames[0] = {...m.state.board.frames[0], prompt: "young woman, She climbs, wide shot",
            prompt_shortened: "as gulls scream", traits_shortened: {"": "yellow raincoat"}}; m.renderAll();""")
        note = page.locator("#board .panel").first.locator(".prompt-shortened")
        expect(note).to_be_visible()
        expect(note).to_have_text("Prompt shortened to fit CLIP's 77 tokens, the action kept; left out part of the style; "
                                  "the character: “yellow raincoat”; scene words “as gulls scream”.")

        # A panel drawn with the identity lock off says so instead of a scale that was not used.
        in_page(page, """
            m.state.board.settings = {...m.state.board.settings, identity_lock: false};
            m.openPanelDialog({...m.state.board.frames[0], prompt: "a prompt", identity: {status: "no_face",
                distance: null}, seconds: 1.5, attempts: 2, prompt_shortened: "at dawn"}, 1);
        """)
        details = page.evaluate(DIALOG_DETAILS)
        assert details["IP-Adapter scale"] == "identity lock off"
        assert details["Identity"] == "no face" and details["Attempts"] == "2" and details["Time"] == "1.5 s"
        assert details["Scene words cut"].startswith("at dawn")
        page.keyboard.press("Escape")
        expect(page.locator("#panel-dialog")).to_be_hidden()

        # A panel with two characters: each one's score by name, and the trait phrases cut by name.
        in_page(page, """m.openPanelDialog({...m.state.board.frames[0], cast: ["Mara", "Ilya"],
            identity: {status: "drift", distance: 0.71, threshold: 0.6, faces: 2, clip_similarity: 0.8,
              characters: [{name: "Mara", status: "match", distance: 0.31, face: 0, clip_similarity: 0.84},
                           {name: "Ilya", status: "drift", distance: 0.71, face: 1, clip_similarity: 0.8}]},
            traits_shortened: {Ilya: "navy coat, red scarf"}}, 1);""")
        details = page.evaluate(DIALOG_DETAILS)
        assert details["Who is in it"] == "Mara, Ilya" and details["Identity"] == "drift 0.71 (CLIP similarity 0.80)"
        expect(page.locator("#panel-dialog-details .identity-characters li")).to_have_text([
            "Mara: match, distance 0.31, face 1 from the left, CLIP 0.84",
            "Ilya: drift, distance 0.71, face 2 from the left, CLIP 0.80"])
        expect(page.locator("#panel-dialog-details .traits-cut li")).to_have_text(["Ilya: navy coat, red scarf"])
        page.keyboard.press("Escape")
        expect(page.locator("#panel-dialog")).to_be_hidden()
        watch.assert_clean()
    except Exception as error:
        raise AssertionError(f"{error}\n--- what the server says ---\n{_server_state(page)}") from error
    finally:
        watch.close()


class HeldLoads:
    """A model loader that fails as `make run` does offline, every load held until the test lets
    it go (``go.release()``): while held, health says the model is loading."""

    def __init__(self):
        self.go = threading.Semaphore(0)

    def __call__(self):
        assert self.go.acquire(timeout=BOARD_TIMEOUT_MS / 1000), "the test never let the load go on"
        raise RuntimeError(LOAD_ERROR)


def test_resume_and_redraw_say_the_model_is_loading(browser, tiny_settings_factory):
    """Resume and Redraw may load the model (the first job after a restart does): the banner
    says so, as for Generate, not only when the page next looks at the studio's health."""
    from playwright.sync_api import expect

    from app import create_app

    model = HeldLoads()
    with _serving(create_app(tiny_settings_factory(), load_generator=model)) as url:
        watch = PageWatch(browser, url, viewport={"width": 1280, "height": 900})
        page = watch.page
        banner = page.locator("#health-banner")
        try:
            page.goto("/")
            page.fill("#story", "A girl finds a map.")
            page.click("#generate")
            loading = page.request.get("/api/health").json()["loading_message"]
            expect(banner).to_have_text(loading, timeout=BOARD_TIMEOUT_MS)
            model.go.release()
            expect(page.locator("#board-status")).to_have_text("failed", timeout=BOARD_TIMEOUT_MS)

            for action in ("#resume", "#board .panel .redraw"):
                # The board failed, its stream is closed (nothing to replay, as after a restart),
                # and the page's next look at the health is far off: stopped here, so that only
                # the action can make one. (No reload: a fresh stream would replay the failure.)
                expect(banner).to_contain_text(LOAD_ERROR)
                page.wait_for_function("() => document.querySelector('#board .panel .redraw:not([disabled])')")
                in_page(page, "clearTimeout(m.state.healthTimer);")
                page.click(action)
                expect(banner).to_have_text(loading, timeout=BOARD_TIMEOUT_MS)
                model.go.release()
                expect(page.locator("#board-status")).to_have_text("failed", timeout=BOARD_TIMEOUT_MS)
                expect(banner).to_contain_text(LOAD_ERROR)
            watch.assert_clean()
        finally:
            model.go.release(100)
            watch.close()


# --- Planning: a plan to edit, then drawn ---------------------------------------------------

PLAN_LINES = [
    "Ada finds a broken radio in the shed.",
    "She solders the last wire at midnight.",
    "A faint voice calls from the sea.",
    "She rows out into the fog.",
]
EDITED_CAPTION = "Ada finds a broken radio in the garden shed."
EDITED_SCENE = "a faint voice crackles from a radio speaker, night, lamplight"
REDRAWN_SCENE = "a small rowing boat in thick fog, lantern light"

# [caption, scene, shot] of every plan row, as the page holds them.
PLAN_ROWS = """
() => [...document.querySelectorAll("#plan-rows .plan-row")].map((row) => [
  row.querySelector(".plan-caption").value, row.querySelector(".plan-scene").value,
  row.querySelector(".plan-shot").value])
"""


def _plan_row(page, n: int):
    return page.locator(f"#plan-rows .plan-row:nth-child({n})")


def test_plan_edit_and_draw(browser, server, artifacts):
    """Plan with the built-in splitter (no LLM here), edit a caption and a scene, delete a row,
    move one, see a server error land on its row, draw, and change a panel's scene in Edit."""
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    api = page.request
    try:
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        plan_button, editor, plan_error = page.locator("#plan"), page.locator("#plan-editor"), page.locator("#plan-error")
        expect(plan_button).to_have_text("Plan panels")
        expect(editor).to_be_hidden()
        premise = "\n".join(PLAN_LINES)
        page.fill("#story", premise)
        page.fill("#character", CHARACTER)
        page.select_option("#preset", "ultra_fast")
        page.fill("#seed", "7")
        plan_button.click()

        rows = page.locator("#plan-rows .plan-row")
        expect(rows).to_have_count(4)
        planned = api.post("/api/plans", data={"premise": premise}).json()
        assert planned["source"] == "built-in" and len(planned["panels"]) == 4
        expect(page.locator("#plan-source")).to_contain_text("built-in splitter")
        # The plan gets the wide pane, not the form's narrow column.
        form_width = page.locator("#story-form").bounding_box()["width"]
        assert editor.bounding_box()["width"] > 1.3 * form_width
        shots = [p["shot"] for p in planned["panels"]]
        # The built-in plan's scene is its caption: blank in the editor, so an edited caption is drawn.
        assert page.evaluate(PLAN_ROWS) == [[line, "", shot] for line, shot in zip(PLAN_LINES, shots)]
        expect(page.locator("#plan-notices li")).to_have_text(planned["notices"])
        expect(page.locator("#plan-stale")).to_be_hidden()

        # Edit a caption and a scene, delete row 2, move the last row up.
        _plan_row(page, 1).locator(".plan-caption").fill(EDITED_CAPTION)
        _plan_row(page, 3).locator(".plan-scene").fill(EDITED_SCENE)
        _plan_row(page, 2).locator(".plan-delete").click()
        expect(rows).to_have_count(3)
        _plan_row(page, 3).locator(".plan-up").click()
        expected = [[EDITED_CAPTION, "", shots[0]], [PLAN_LINES[3], "", shots[3]], [PLAN_LINES[2], EDITED_SCENE, shots[2]]]
        assert page.evaluate(PLAN_ROWS) == expected
        expect(_plan_row(page, 2).locator(".plan-up")).to_be_focused()  # focus follows the moved row
        expect(_plan_row(page, 1).locator(".plan-up")).to_be_disabled()
        expect(_plan_row(page, 3).locator(".plan-down")).to_be_disabled()

        # A blank caption is caught in the page, on its row.
        boards_before = len(api.get("/api/storyboards").json()["storyboards"])
        _plan_row(page, 1).locator(".plan-caption").fill("")
        page.click("#draw-plan")
        expect(plan_error).to_have_text("Panel 1 needs a caption.")
        expect(_plan_row(page, 1)).to_have_class(re.compile(r"\binvalid\b"))
        expect(_plan_row(page, 1).locator(".plan-caption")).to_be_focused()
        page.keyboard.type(EDITED_CAPTION)
        expect(plan_error).to_have_text("")
        expect(_plan_row(page, 1)).not_to_have_class(re.compile(r"\binvalid\b"))

        # The server's field error (panels[1].shot) lands on row 2's shot; fixing it clears it.
        in_page(page, "m.state.plan.rows[1].shot = 'dutch angle'; m.renderPlan();")
        page.click("#draw-plan")
        expect(plan_error).to_contain_text("shot must be one of")
        row2_shot = _plan_row(page, 2).locator(".plan-shot")
        expect(_plan_row(page, 2)).to_have_class(re.compile(r"\binvalid\b"))
        expect(row2_shot).to_have_attribute("aria-invalid", "true")
        expect(row2_shot).to_be_focused()
        expect(page.locator("#plan-rows .plan-row.invalid")).to_have_count(1)
        assert len(api.get("/api/storyboards").json()["storyboards"]) == boards_before
        page.screenshot(path=str(artifacts / "plan-error.png"), full_page=True)
        row2_shot.select_option("wide shot")
        expect(plan_error).to_have_text("")
        expect(row2_shot).not_to_have_attribute("aria-invalid", "true")
        expected[1][2] = "wide shot"
        # With one unnamed character a row can still show no one: the radio's scene, nobody in it.
        _plan_row(page, 3).locator(".cast-nobody").check()

        # Draw this plan: the board is drawn from the rows, in their order, as Generate would,
        # with the uploaded face (a multipart form, the panels in it as JSON text).
        from helpers import png_bytes

        page.set_input_files("#reference", files=[{"name": "face.png", "mimeType": "image/png",
                                                   "buffer": png_bytes((64, 64), "tan")}])
        expect(page.locator("#reference-preview")).to_be_visible()
        page.click("#draw-plan")
        expect(page.locator("#board .panel")).to_have_count(3)
        page.wait_for_function(ALL_PANELS_LOADED, arg=3, timeout=BOARD_TIMEOUT_MS)
        expect(page.locator("#board-status")).to_have_text("done")
        expect(editor).to_be_visible()  # kept, to change and draw again
        board_id = page.evaluate("decodeURIComponent(location.hash.replace('#board=', ''))")
        board = api.get(f"/api/storyboards/{board_id}").json()
        # A multipart form sends line breaks as CRLF, and the server keeps them as sent.
        assert board["story"].replace("\r\n", "\n") == premise and board["reference"]["kind"] == "uploaded"
        frames = board["frames"]
        assert [f["caption"] for f in frames] == [EDITED_CAPTION, PLAN_LINES[3], PLAN_LINES[2]]
        assert [f["scene"] for f in frames] == [EDITED_CAPTION, PLAN_LINES[3], EDITED_SCENE]
        assert [f["shot"] for f in frames] == [row[2] for row in expected]
        assert [f["seed"] for f in frames] == [7, 8, 9]
        assert "radio speaker" in frames[2]["prompt"] and "faint voice calls" not in frames[2]["prompt"]
        assert [f["cast"] for f in frames] == [[""], [""], []]  # rows left unticked: whoever their text names
        assert "raincoat" in frames[0]["prompt"] and "raincoat" not in frames[2]["prompt"]
        expect(page.locator("#board .panel[data-index='3'] .cast-chip")).to_have_text("no one")
        expect(page.locator("#board .panel .panel-caption")).to_have_text([f["caption"] for f in frames])

        # The details show a scene that is not the caption; a panel without one shows none.
        page.locator("#board .panel[data-index='3'] .panel-open").click()
        assert page.evaluate(DIALOG_DETAILS)["Scene"] == EDITED_SCENE
        page.keyboard.press("Escape")
        page.locator("#board .panel[data-index='1'] .panel-open").click()
        assert "Scene" not in page.evaluate(DIALOG_DETAILS)
        page.keyboard.press("Escape")

        # Edit changes a panel's scene (the caption stays) and redraws it.
        panel2 = page.locator("#board .panel[data-index='2']")
        panel2.locator(".edit").click()
        expect(panel2.locator(".edit-scene")).to_have_value("")  # its scene is its caption
        panel2.locator(".edit-scene").fill(REDRAWN_SCENE)
        panel2.locator(".edit-form button[type='submit']").click()
        redrawn = _poll(lambda: (b := api.get(f"/api/storyboards/{board_id}").json())["status"] == "done"
                        and b["frames"][1]["scene"] == REDRAWN_SCENE
                        and all(f["status"] == "done" for f in b["frames"]) and b,
                        timeout=BOARD_TIMEOUT_MS / 1000, message="panel 2 to be redrawn with its new scene")
        assert redrawn["frames"][1]["caption"] == PLAN_LINES[3] and "rowing boat" in redrawn["frames"][1]["prompt"]
        page.wait_for_function(ALL_PANELS_LOADED, arg=3, timeout=TIMEOUT_MS)
        panel2.locator(".edit").click()
        expect(panel2.locator(".edit-scene")).to_have_value(REDRAWN_SCENE)
        panel2.locator(".edit-form .ghost").click()  # Cancel

        # A changed story is pointed out (the plan was made from the old one); Discard closes the plan.
        page.fill("#story", "Something else.")
        expect(page.locator("#plan-stale")).to_be_visible()
        page.click("#plan-discard")
        expect(editor).to_be_hidden()
        watch.assert_clean(answered=(400,))
    except Exception as error:
        raise AssertionError(f"{error}\n--- what the server says ---\n{_server_state(page)}") from error
    finally:
        watch.close()


def test_each_mode_shows_its_cost_and_this_machines_estimate_of_the_board(browser, tiny_settings_factory):
    """The hint beside the speed mode gives its counted TFLOP a panel and, from the step time
    measured on this machine (kept in the data dir), the board's time for the panel count."""
    import step_time
    from app import create_app
    from config import PRESETS
    from fakes import FakeGenerator
    from playwright.sync_api import expect

    settings = tiny_settings_factory()
    step_time.record(settings, PRESETS["fast"], [PRESETS["fast"].passes_per_panel * 0.5])  # 0.5 s a UNet pass
    with _serving(create_app(settings, load_generator=FakeGenerator)) as url:
        watch = PageWatch(browser, url, viewport={"width": 1280, "height": 900})
        page, hint = watch.page, watch.page.locator("#preset-hint")
        try:
            page.goto("/")
            expect(page.locator("#preset option[value='draft']")).to_have_text("Draft — 1 step")
            page.fill("#frames", "6")
            page.select_option("#preset", "draft")  # 1.15 passes a panel: 0.57 s, 3.4 s for six
            expect(hint).to_contain_text("7.8 TFLOP a panel · about 3 s for 6 panels on this machine")
            page.select_option("#preset", "fast")  # 25.7 passes a panel: 12.8 s, 77 s for six
            expect(hint).to_contain_text("174.3 TFLOP a panel · about 2 min for 6 panels on this machine")
            page.fill("#frames", "2")
            expect(hint).to_contain_text("about 26 s for 2 panels on this machine")
            # The consistent look adds a reference row a step and character to each call (one
            # panel a call here): 24 passes at 0.5 s a panel, 12 s, 26 + 24 = 50 s for two.
            page.check("#identity-lock")
            page.check("#consistent-look")
            expect(hint).to_contain_text("about 50 s for 2 panels on this machine, the consistent look included")
            page.click("#cast-add")  # two characters: two rows a call, 26 + 48 = 74 s, about 2 min
            expect(hint).to_contain_text("about 2 min for 2 panels on this machine, the consistent look included")
            page.uncheck("#identity-lock")  # no lock, no look
            expect(hint).to_contain_text("about 26 s for 2 panels on this machine")
            expect(hint).not_to_contain_text("consistent look")
            page.check("#identity-lock")
            page.select_option("#preset", "draft")  # one step: drawn without the look
            expect(hint).not_to_contain_text("consistent look")
            watch.assert_clean()
        finally:
            watch.close()


@pytest.fixture
def planning_server(tiny_settings_factory, llm_server):
    """A studio that plans with the chat-completions stand-in (and draws nothing)."""
    _require_browser()
    from app import create_app
    from fakes import FakeGenerator

    settings = tiny_settings_factory(planner_url=llm_server.url, planner_model="stand-in-7b", planner_timeout_s=60)
    with _serving(create_app(settings, load_generator=FakeGenerator)) as url:
        yield url


def test_planning_with_an_llm(browser, planning_server, llm_server, artifacts):
    """The button names the model, a slow answer shows as busy and cannot be asked twice, the
    LLM's English scenes fill the rows, and a fallback plan says why."""
    from llm_standin import plan_answer, raw_answer, slow_answer
    from playwright.sync_api import expect

    llm_server.answer(slow_answer(plan_answer(3)), raw_answer(b"<html>not the protocol</html>"))
    watch = PageWatch(browser, planning_server, viewport={"width": 1280, "height": 900})
    page = watch.page
    try:
        page.goto("/")
        plan_button = page.locator("#plan")
        expect(plan_button).to_have_text("Plan with stand-in-7b")
        expect(page.locator("#preset option")).not_to_have_count(0)
        page.fill("#story", "A lighthouse keeper's daughter follows a distress call into the fog.")
        page.fill("#frames", "3")
        plan_button.click()
        expect(plan_button).to_be_disabled()
        expect(plan_button).to_have_text("Planning…")
        expect(page.locator("#plan-status")).to_contain_text("Asking stand-in-7b")
        _poll(lambda: len(llm_server.requests) == 1, message="the planner to be asked")
        in_page(page, "m.planStory();")  # a second click while planning (the button is disabled) asks nothing
        llm_server.release.set()

        rows = page.locator("#plan-rows .plan-row")
        expect(rows).to_have_count(3)
        assert page.evaluate(PLAN_ROWS) == [[f"Panel {i} of the story.", f"A hillside at dawn, moment {i}.", shot]
                                            for i, shot in zip((1, 2, 3), ("establishing shot", "close-up",
                                                                           "medium shot"))]
        expect(page.locator("#plan-source")).to_contain_text("Planned by stand-in-7b")
        page.screenshot(path=str(artifacts / "plan-llm.png"), full_page=True)
        expect(page.locator("#plan-notices")).to_be_hidden()
        expect(plan_button).to_be_enabled()
        expect(page.locator("#plan-status")).to_have_text("")
        assert len(llm_server.requests) == 1

        # An answer that is not the protocol: the built-in splitter's plan, and why, in view.
        plan_button.click()
        notices = page.locator("#plan-notices")
        expect(notices).to_be_visible()
        expect(notices).to_have_class(re.compile(r"\bwarn\b"))
        expect(page.locator("#plan-source")).to_contain_text("was not used")
        answer = page.request.post("/api/plans", data={"premise": page.input_value("#story"), "frames": 3}).json()
        assert answer["source"] == "fallback" and "chat-completions" in answer["notices"][0]
        expect(page.locator("#plan-notices li")).to_have_text(answer["notices"])
        assert page.evaluate(PLAN_ROWS) == [[p["caption"], "", p["shot"]] for p in answer["panels"]]
        page.screenshot(path=str(artifacts / "plan-fallback.png"), full_page=True)
        watch.assert_clean()
    finally:
        watch.close()


# --- The studio's health ---------------------------------------------------------------------


def test_the_page_says_it_is_the_demo_and_lists_the_redis_workers(browser, server):
    """The tiny models draw noise: the header says so once. With Redis workers the header
    lists each (name, device, state, board) from GET /api/health; with none, boards wait."""
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    try:
        page.goto("/")
        expect(page.locator("#demo-note")).to_be_visible()
        expect(page.locator("#demo-note")).to_contain_text("random noise")
        expect(page.locator("#workers")).to_be_hidden()  # the embedded worker: nothing to list
        health = page.request.get("/api/health").json()
        workers = [{"name": "gpu-box.1", "host": "gpu-box", "device": "cuda", "model": "ready", "error": None,
                    "board": "0123456789ab", "warm_up": None, "last_heartbeat": 0},
                   {"name": "mac.7", "host": "mac", "device": "mps", "model": "loading", "error": None,
                    "board": None, "warm_up": None, "last_heartbeat": 0}]
        answers = [{**health, "backend": "redis://127.0.0.1:6379/0", "workers": workers},
                   {**health, "backend": "redis://127.0.0.1:6379/0", "workers": []}]
        page.route("**/api/health", lambda route: route.fulfill(json=answers[0]))
        page.reload()
        expect(page.locator("#workers li")).to_have_text(["gpu-box.1 · cuda · ready · drawing 0123456789ab",
                                                          "mac.7 · mps · loading the model"])
        answers.pop(0)
        page.reload()
        expect(page.locator("#workers li")).to_have_text([re.compile(r"^No worker is running: boards wait")])
        watch.assert_clean()
    finally:
        watch.close()


def test_a_failing_worker_is_shown_until_it_recovers(browser, studio, server, monkeypatch):
    """A full disk: the worker cannot take jobs and a new board cannot be stored. The banner
    says so while it lasts, the 507 shows as the form's error, and both go when it is over."""
    from playwright.sync_api import expect
    from backend import DISK_FULL_MESSAGE

    store = studio_of(studio).store

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    try:
        page.goto("/")
        banner = page.locator("#health-banner")
        expect(page.locator("#preset option")).not_to_have_count(0)
        expect(banner).to_be_hidden()
        monkeypatch.setattr(store, "next_job", disk_full)
        monkeypatch.setattr(store, "create_board", disk_full)
        _poll(lambda: page.request.get("/api/health").json()["status"] == "failing", message="the worker to fail")

        page.fill("#story", "A girl finds a map.")
        page.click("#generate")
        expect(page.locator("#error")).to_have_text(DISK_FULL_MESSAGE)
        expect(banner).to_have_text(DISK_FULL_MESSAGE)
        expect(banner).to_have_class(re.compile(r"\berror\b"))

        monkeypatch.undo()  # space is free again: the worker takes jobs, the banner goes
        expect(banner).to_be_hidden()
        watch.assert_clean(answered=(507,))
    finally:
        monkeypatch.undo()
        watch.close()


@pytest.fixture
def stopped_server(tiny_settings_factory):
    _require_browser()
    from app import create_app

    with _serving(create_app(tiny_settings_factory(), start_worker=False)) as url:
        yield url


def test_a_stopped_worker_is_shown(browser, stopped_server):
    from playwright.sync_api import expect

    watch = PageWatch(browser, stopped_server, viewport={"width": 1280, "height": 900})
    page = watch.page
    try:
        page.goto("/")
        assert page.request.get("/api/health").json()["status"] == "worker_stopped"
        expect(page.locator("#health-banner")).to_have_text("The studio's worker has stopped; restart the studio.")
        watch.assert_clean()
    finally:
        watch.close()


def test_csp_violations_are_seen(browser, server):
    """The check every test makes can fail: the app sends the policy, and an inline script or
    a style attribute added to the page is refused and recorded."""
    watch = PageWatch(browser, server)
    page = watch.page
    try:
        response = page.goto("/")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        page.evaluate("""() => {
            const script = document.createElement("script");
            script.textContent = "window.__ran = 1";
            document.head.append(script);
            document.getElementById("board-empty").setAttribute("style", "color: red");
        }""")
        # The binding's calls reach the test while Playwright talks to the page.
        _poll(lambda: page.evaluate("window.__cspViolations.length") and len(watch.csp) == 2,
              message="the violations to be reported")
        assert page.evaluate("window.__ran") is None
        assert sorted(v["directive"] for v in watch.csp) == ["script-src-elem", "style-src-attr"]
    finally:
        watch.close()


# --- Without a browser: what the page's files may contain ------------------------------------


class _Markup(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        self.inline += [f"<{tag} {name}>" for name in names if name.startswith("on") or name == "style"]
        if tag == "style" or (tag == "script" and "src" not in names):
            self.inline.append(f"<{tag}>")


def test_the_page_has_no_inline_script_or_style():
    """A Content-Security-Policy without 'unsafe-inline' must not break the page."""
    markup = _Markup()
    markup.feed((ROOT / "templates" / "index.html").read_text(encoding="utf-8"))
    assert markup.inline == []
    script = _page_script()
    assert not re.search(r"setAttribute\(\s*[\"'](on\w+|style)[\"']", script)
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML", script)


def test_the_page_loads_one_module_and_the_modules_import_each_other():
    """No bundle, no globals: index.html loads the entry module, which reaches every other by import."""
    html = (ROOT / "templates" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script\b[^>]*>", html) == [
        "<script type=\"module\" src=\"{{ url_for('static', filename='js/main.js') }}\">"]
    imports = _module_imports()
    reached, todo = set(), ["main"]
    while todo:
        name = todo.pop()
        reached.add(name)
        todo += imports[name] - reached
    assert reached == set(imports)
    assert not re.search(r"window\.\w+\s*=", _page_script())  # modules share by import, not through window


def _module_imports() -> dict[str, set[str]]:
    return {path.stem: set(re.findall(r'from "\./([\w-]+)\.js";', path.read_text(encoding="utf-8")))
            for path in STATIC_JS.glob("*.js")}


def test_the_form_modules_import_only_downward():
    """main.js says so: only the board's modules (a panel's buttons act on the board, which draws
    its panels again) import one another; a module of the form reaches itself by no import chain."""
    imports = _module_imports()

    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(imports[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += imports[name]
        return seen

    board = {"board", "events", "view", "panels", "edit", "drag", "history", "health"}
    assert sorted(name for name in imports if name in reaches(name)) == sorted(board)


def test_the_page_builds_no_api_url_past_the_entry_points():
    """Every URL past /api/health, /api/presets, /api/planner, /api/storyboards (and its import),
    /api/plans and /api/screenplays comes from an answer (a board's links): only api.js names a
    URL, and only those."""
    literals = {path.name: re.findall(r"[\"'`](/api[^\"'`]*)", path.read_text(encoding="utf-8"))
                for path in STATIC_JS.glob("*.js")}
    assert {name: urls for name, urls in literals.items() if urls and name != "api.js"} == {}
    assert sorted(literals["api.js"]) == ["/api/health", "/api/planner", "/api/plans", "/api/presets",
                                          "/api/screenplays", "/api/storyboards", "/api/storyboards/import"]


def test_the_speed_modes_come_from_the_server():
    from config import PRESETS

    script = _page_script()
    assert [name for name in PRESETS if f'"{name}"' in script or f"'{name}'" in script] == []


def test_the_page_names_no_shot_type_itself():
    """The shot types come from /api/presets (prompt_enhancer's list); the page keeps no copy."""
    from prompt_enhancer import SHOT_TYPES

    script = _page_script()
    assert [shot for shot in SHOT_TYPES if f'"{shot}"' in script] == []


# --- Layouts: the sketch and pose editor ----------------------------------------------------

LAYOUT_LINES = ["Mara sketches the harbour.", "Mara and Ilya talk on the pier."]

# The sketch's dark pixels (the canvas is white paper with dark lines).
DARK_PIXELS = """
() => {
  const canvas = document.getElementById("sketch-canvas");
  const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let dark = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] < 128) dark += 1;
  return dark;
}
"""

CANVAS_BOX = """
(selector) => {
  const canvas = document.querySelector(selector);
  const rect = canvas.getBoundingClientRect();
  return {x: rect.left, y: rect.top, w: rect.width, h: rect.height, cw: canvas.width, ch: canvas.height};
}
"""


def _on_canvas(box: dict, fx: float, fy: float) -> tuple[float, float]:
    """Where the fraction (fx, fy) of a canvas is on the page."""
    return box["x"] + fx * box["w"], box["y"] + fy * box["h"]


def _mouse_stroke(page, box: dict, points: list[tuple[float, float]]):
    page.mouse.move(*_on_canvas(box, *points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*_on_canvas(box, *point), steps=4)
    page.mouse.up()


def _pen_stroke(cdp, box: dict, points: list[tuple[float, float]]):
    """A stylus stroke, as Chromium reports one: pointer events with pointerType "pen"."""
    for i, point in enumerate(points):
        x, y = _on_canvas(box, *point)
        kind = "mousePressed" if i == 0 else "mouseMoved"
        cdp.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "buttons": 1,
                                              "clickCount": 1, "pointerType": "pen"})
    cdp.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x, "y": y, "button": "left",
                                          "clickCount": 1, "pointerType": "pen"})


def _touch_drag(cdp, start: tuple[float, float], end: tuple[float, float], steps: int = 6):
    """A finger dragged across the page (pointerType "touch")."""
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": start[0], "y": start[1]}]})
    for i in range(1, steps + 1):
        x = start[0] + (end[0] - start[0]) * i / steps
        y = start[1] + (end[1] - start[1]) * i / steps
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def _starting_pose(poses: dict, name: str, centre: float, width: int, height: int) -> list:
    """pose.js's starting pose ``name`` for a figure centred at ``centre``, in canvas pixels
    (the figure 0.8 of the height, its top at 0.1)."""
    h, top = 0.8 * height, 0.1 * height
    return [None if p is None else [centre * width + p[0] * h, top + p[1] * h] for p in poses[name]]


def test_the_layout_editor_sketches_and_poses_plan_rows(browser, server, artifacts):
    """In a plan of two rows: row 1 gets a sketch (mouse and pen strokes, undo, clear and its
    undo, the eraser; a blank sketch is refused), row 2 a pose of Mara and Ilya (Ilya's wrist
    dragged by a finger, Mara sitting) followed at 0.8. Draw this plan sends them as the rows'
    layouts (the studio's answer is stood in for: it refuses row 2's layout, which the row then
    shows). A stored sketch comes back into the editor as it was, and Remove takes it away."""
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900}, has_touch=True)
    page = watch.page
    cdp = watch.context.new_cdp_session(page)

    def posted(request):
        return request.method == "POST" and request.url.endswith("/api/storyboards")

    try:
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        page.fill("#story", "\n".join(LAYOUT_LINES))
        page.fill("#character-name", "Mara")
        page.fill("#character", MARA)
        page.click("#cast-add")
        page.fill("#character-name-2", "Ilya")
        page.fill("#character-2", ILYA)
        page.click("#plan")
        expect(page.locator("#plan-rows .plan-row")).to_have_count(2)
        expect(page.locator("#plan-rows .plan-layout")).to_have_text(["none", "none"])
        dialog, error = page.locator("#layout-dialog"), page.locator("#layout-error")

        # Row 1: a sketch at the panel's aspect, 512 pixels on its long side.
        _plan_row(page, 1).locator(".plan-layout-edit").click()
        expect(dialog).to_be_visible()
        expect(page.locator("#layout-tab-sketch")).to_have_attribute("aria-selected", "true")
        aspect = next(a for a in api_presets(page)["aspects"] if a["name"] == page.input_value("#aspect"))
        box = page.evaluate(CANVAS_BOX, "#sketch-canvas")
        assert max(box["cw"], box["ch"]) == 512
        assert abs(box["cw"] / box["ch"] - aspect["width"] / aspect["height"]) < 0.01
        page.click("#layout-apply")
        expect(error).to_contain_text("blank")
        expect(dialog).to_be_visible()

        _mouse_stroke(page, box, [(0.2, 0.3), (0.5, 0.5), (0.7, 0.4)])
        line = page.evaluate(DARK_PIXELS)
        assert line > 0
        expect(error).to_have_text("")
        _pen_stroke(cdp, box, [(0.1, 0.8), (0.4, 0.85), (0.9, 0.9)])
        both = page.evaluate(DARK_PIXELS)
        assert both > line
        page.keyboard.press("Control+z")
        assert page.evaluate(DARK_PIXELS) == line
        page.keyboard.press("Delete")
        assert page.evaluate(DARK_PIXELS) == 0
        page.keyboard.press("Control+z")  # a clear is undone too: nothing drawn is lost
        assert page.evaluate(DARK_PIXELS) == line
        page.keyboard.press("e")
        expect(page.locator("#sketch-eraser")).to_have_attribute("aria-pressed", "true")
        _mouse_stroke(page, box, [(0.45, 0.3), (0.45, 0.7)])
        assert 0 < page.evaluate(DARK_PIXELS) < line
        page.keyboard.press("Control+z")
        page.keyboard.press("p")
        expect(page.locator("#sketch-pen")).to_have_attribute("aria-pressed", "true")
        dialog.screenshot(path=str(artifacts / "layout-sketch.png"))
        page.click("#layout-apply")
        expect(dialog).to_be_hidden()
        expect(_plan_row(page, 1).locator(".plan-layout")).to_have_text("sketch")

        # Row 2: one figure per character in it, each named; Ilya's right wrist dragged by a
        # finger (which makes him the chosen figure), then Mara chosen and seated.
        _plan_row(page, 2).locator(".plan-layout-edit").click()
        page.click("#layout-tab-pose")
        expect(page.locator("#layout-pose")).to_be_visible()
        expect(page.locator("#layout-sketch")).to_be_hidden()
        expect(page.locator("#pose-figure option")).to_have_text(["Mara", "Ilya"])
        expect(page.locator("#pose-starts button")).to_have_text(["Standing", "Walking", "Sitting", "Pointing",
                                                                   "Side view"])
        box = page.evaluate(CANVAS_BOX, "#pose-canvas")
        poses = page.evaluate("async () => (await import('/static/js/pose.js')).POSES")
        width, height = box["cw"], box["ch"]
        wrist = _starting_pose(poses, "standing", 2 / 3, width, height)[4]
        _touch_drag(cdp, _on_canvas(box, wrist[0] / width, wrist[1] / height), _on_canvas(box, 0.9, 0.2))
        expect(page.locator("#pose-figure")).to_have_value("1")
        page.select_option("#pose-figure", "0")
        page.click("#pose-starts button[data-pose='sitting']")
        page.locator("#layout-strength").fill("0.8")
        expect(page.locator("#layout-strength-value")).to_have_text("0.80")
        dialog.screenshot(path=str(artifacts / "layout-pose.png"))
        page.click("#layout-apply")
        expect(_plan_row(page, 2).locator(".plan-layout")).to_have_text("pose of Mara, Ilya")

        # Draw this plan: the rows' layouts are in the request.
        page.route("**/api/storyboards", lambda route: route.fulfill(
            status=400, json={"error": "Ilya's pose is refused here.", "field": "panels[1].layout"}))
        with page.expect_request(posted) as first:
            page.click("#draw-plan")
        sent = first.value.post_data_json
        sketch, pose = (panel.get("layout") for panel in sent["panels"])
        assert set(sketch) == {"kind", "image"}  # the slider was left alone: the studio's default
        assert sketch["kind"] == "sketch" and sketch["image"].startswith("data:image/png;base64,")
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(sketch["image"].split(",", 1)[1]))) as image:
            assert image.size == (box["cw"], box["ch"])
            assert sum(1 for value in image.convert("L").getdata() if value < 128) == line
        assert pose["kind"] == "pose" and pose["strength"] == 0.8
        assert [p["character"] for p in pose["poses"]] == ["Mara", "Ilya"]
        mara, ilya = (p["keypoints"] for p in pose["poses"])
        assert len(mara) == len(ilya) == 18
        assert ilya[4] == pytest.approx([0.9, 0.2], abs=0.01)  # the dragged wrist
        standing = _starting_pose(poses, "standing", 2 / 3, width, height)
        assert [p for i, p in enumerate(ilya) if i != 4] == [
            pytest.approx([x / width, y / height], abs=1e-3) for i, (x, y) in enumerate(standing) if i != 4]
        sitting = _starting_pose(poses, "sitting", 1 / 3, width, height)
        lift = _starting_pose(poses, "standing", 1 / 3, width, height)[1][1] - sitting[1][1]  # her neck stays put
        assert mara == [pytest.approx([x / width, (y + lift) / height], abs=1e-3) for x, y in sitting]
        assert sent["panels"][1]["cast"] == ["Mara", "Ilya"]

        # The refusal lands on row 2's layout button; a new layout settles it.
        expect(page.locator("#plan-error")).to_have_text("Ilya's pose is refused here.")
        expect(_plan_row(page, 2).locator(".plan-layout-edit")).to_be_focused()
        expect(_plan_row(page, 2)).to_have_class(re.compile(r"\binvalid\b"))

        # Row 1's stored sketch comes back as it was; Esc keeps it; Remove takes it away.
        _plan_row(page, 1).locator(".plan-layout-edit").click()
        expect(page.locator("#layout-remove")).to_be_visible()
        _poll(lambda: page.evaluate(DARK_PIXELS) == line, message="the stored sketch in the editor")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(_plan_row(page, 1).locator(".plan-layout")).to_have_text("sketch")
        _plan_row(page, 1).locator(".plan-layout-edit").click()
        page.click("#layout-remove")
        expect(_plan_row(page, 1).locator(".plan-layout")).to_have_text("none")
        with page.expect_request(posted) as second:
            page.click("#draw-plan")
        again = second.value.post_data_json
        assert "layout" not in again["panels"][0] and again["panels"][1]["layout"] == pose
        expect(page.locator("#plan-error")).to_have_text("Ilya's pose is refused here.")
        watch.assert_clean(answered=(400,))
    finally:
        watch.close()


def api_presets(page) -> dict:
    return page.request.get("/api/presets").json()


def _rough_drawing(chalk: bool = False) -> bytes:
    """A scanned thumbnail: a dark box and a line on grey paper (``chalk``: the same, light on dark)."""
    from PIL import Image, ImageDraw, ImageOps

    image = Image.new("RGB", (300, 200), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((60, 40, 140, 160), outline=(20, 20, 20), width=6)
    draw.line((160, 150, 280, 60), fill=(20, 20, 20), width=6)
    if chalk:
        image = ImageOps.invert(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_panels_layout_button_redraws_it_with_a_sketch_and_the_panel_shows_its_layout(browser, server,
                                                                                       artifacts):
    """A drawn panel's Layout: an uploaded rough drawing is the sketch (a chalk one turned
    round, a file that is no picture said), sent with the panel's seed to its redraw link (the
    answer stood in for), and Remove sends layout null. A panel's layout toggle holds across
    renders. (The studio's own answers: the end-to-end test below.)"""
    from helpers import png_bytes
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page

    try:
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        page.fill("#story", "Mara waits on the pier.")
        page.fill("#frames", "1")
        page.fill("#seed", "5")
        page.select_option("#preset", "ultra_fast")
        page.click("#generate")
        page.wait_for_function(ALL_PANELS_LOADED, arg=1, timeout=BOARD_TIMEOUT_MS)
        board = page.request.get(f"/api/storyboards/{in_page(page, 'return m.state.boardId;')}").json()
        frame = board["frames"][0]
        page.route(f"**{frame['links']['regenerate']}", lambda route: route.fulfill(status=503,
                                                                                  json={"error": "Not now."}))

        panel = page.locator("#board .panel").first
        panel.locator(".layout-edit").click()
        expect(page.locator("#layout-dialog-title")).to_have_text("Layout of panel 1")
        expect(page.locator("#layout-remove")).to_be_hidden()  # nothing to remove yet
        expect(page.locator("#pose-figure option")).to_have_text(["the character"])
        page.set_input_files("#sketch-upload", files=[{"name": "thumb.png", "mimeType": "image/png",
                                                        "buffer": _rough_drawing()}])
        _poll(lambda: page.evaluate(DARK_PIXELS) > 0, message="the uploaded drawing on the canvas")
        drawn = page.evaluate(DARK_PIXELS)
        # Light lines on dark (a chalk drawing; the studio's stored sketches) are turned round.
        page.keyboard.press("Control+z")
        assert page.evaluate(DARK_PIXELS) == 0
        page.set_input_files("#sketch-upload", files=[{"name": "chalk.png", "mimeType": "image/png",
                                                        "buffer": _rough_drawing(chalk=True)}])
        _poll(lambda: page.evaluate(DARK_PIXELS) == drawn, message="the chalk drawing, turned round")
        page.set_input_files("#sketch-upload", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                        "buffer": b"not a picture"}])
        expect(page.locator("#layout-error")).to_contain_text("notes.txt is not a picture")
        assert page.evaluate(DARK_PIXELS) > 0  # what was drawn stays
        with page.expect_request(lambda r: r.url.endswith(frame["links"]["regenerate"])) as redraw:
            page.click("#layout-apply")
        sent = redraw.value.post_data_json
        assert set(sent) == {"seed", "layout"} and sent["seed"] == frame["seed"] == 5
        assert sent["layout"]["kind"] == "sketch" and sent["layout"]["image"].startswith("data:image/png")
        expect(page.locator("#error")).to_have_text("Not now.")

        # A panel with a pose layout, as the studio sends it (a board JSON stood in for).
        image = "data:image/png;base64," + base64.b64encode(png_bytes((48, 27), "black")).decode()
        layout = {"kind": "pose", "strength": 0.8, "factor": 1.0, "adapter": "TencentARC/t2i-adapter-openpose-sdxl-1.0",
                  "poses": [{"character": "", "keypoints": [[0.5, 0.5]] * 18}], "image": image}
        in_page(page, "m.state.board.frames[0].layout = arg; m.renderAll();", layout)
        toggle, overlay = panel.locator(".layout-toggle"), panel.locator("img.panel-layout")
        expect(toggle).to_have_text("Pose")
        expect(toggle).to_have_attribute("aria-pressed", "false")
        expect(overlay).to_be_hidden()
        toggle.click()
        expect(overlay).to_be_visible()
        expect(overlay).to_have_attribute("src", image)
        in_page(page, "m.renderAll();")
        expect(panel.locator("img.panel-layout")).to_be_visible()  # the toggle holds across renders
        expect(panel.locator(".layout-toggle")).to_have_attribute("aria-pressed", "true")
        panel.screenshot(path=str(artifacts / "layout-overlay.png"))

        # Its Layout opens on the pose; Remove sends layout null.
        panel.locator(".layout-edit").click()
        expect(page.locator("#layout-tab-pose")).to_have_attribute("aria-selected", "true")
        with page.expect_request(lambda r: r.url.endswith(frame["links"]["regenerate"])) as removal:
            page.click("#layout-remove")
        assert removal.value.post_data_json == {"seed": 5, "layout": None}
        watch.assert_clean(answered=(503,))
    finally:
        watch.close()


# --- A screenplay in, the board as an animatic ------------------------------------------------

FOUNTAIN_SCENE = """INT. LIGHTHOUSE - NIGHT

MARA climbs the stairs with a lamp.

MARA
Ilya? Are you up there?

ILYA turns from the window.

ILYA
(quietly)
The ships are coming.
"""

ANIMATIC_SHOWS = """
() => ({index: document.getElementById("animatic-stage").dataset.index,
        caption: document.getElementById("animatic-caption").textContent,
        dialogue: document.getElementById("animatic-dialogue").textContent,
        playing: document.getElementById("animatic-play").getAttribute("aria-pressed")})
"""


def test_a_screenplay_scene_becomes_a_board_with_its_cast_and_plays_as_an_animatic(browser, server, artifacts):
    """Paste a Fountain scene with two characters (one the form already has, with traits): the
    plan and the cast fill in, the new character's traits are asked for, the board is drawn with
    that cast and the dialogue under the captions; then the animatic plays it on a fake clock
    that the test steps (Playwright's page.clock: no sleeps), scrubs, keys, and changes the timing."""
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    api = page.request
    try:
        page.clock.install()  # before the page runs: its performance.now and requestAnimationFrame are fake
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        page.select_option("#preset", "ultra_fast")
        page.fill("#seed", "5")
        page.fill("#character-name", "ilya")
        page.fill("#character", ILYA)
        page.locator("#screenplay-input summary").click()
        page.fill("#screenplay-text", "Just a story about a lighthouse.")
        page.click("#screenplay-read")
        expect(page.locator("#error")).to_contain_text("not a screenplay")
        expect(page.locator("#screenplay-text")).to_be_focused()
        page.fill("#screenplay-text", FOUNTAIN_SCENE)
        expect(page.locator("#error")).to_have_text("")
        page.click("#screenplay-read")

        rows = page.locator("#plan-rows .plan-row")
        expect(rows).to_have_count(2)
        expect(page.locator("#plan-source")).to_contain_text("screenplay")
        expect(page.locator("#screenplay-scene")).to_be_hidden()  # one scene: nothing to choose
        expect(page.locator("#story")).to_have_value("INT. LIGHTHOUSE - NIGHT")
        expect(page.locator("#character-name")).to_have_value("Mara")
        expect(page.locator("#character-name-2")).to_have_value("ilya")  # the form's spelling, and traits
        expect(page.locator("#character")).to_have_value("")
        expect(page.locator("#character-2")).to_have_value(ILYA)
        expect(_plan_row(page, 1).locator(".plan-caption")).to_have_value("MARA climbs the stairs with a lamp.")
        expect(_plan_row(page, 2).locator(".plan-dialogue")).to_have_value("Ilya: (quietly) The ships are coming.")
        expect(_plan_row(page, 1).locator(".plan-scene")).to_have_value(
            "MARA climbs the stairs with a lamp. Interior, lighthouse, night")

        # Mara is new: her traits are asked for, on her row, before anything is drawn.
        page.click("#draw-plan")
        expect(page.locator("#error")).to_contain_text("Describe character 1")
        expect(page.locator("#character")).to_be_focused()
        page.keyboard.type(MARA)
        page.click("#draw-plan")
        expect(page.locator("#board .panel")).to_have_count(2)
        page.wait_for_function(ALL_PANELS_LOADED, arg=2, timeout=BOARD_TIMEOUT_MS)
        expect(page.locator("#board-status")).to_have_text("done")
        board_id = in_page(page, "return m.state.boardId;")
        board = api.get(f"/api/storyboards/{board_id}").json()
        assert [(c["name"], c["traits"]) for c in board["characters"]] == [("Mara", MARA), ("ilya", ILYA)]
        assert board["title"] == "INT. LIGHTHOUSE - NIGHT"
        assert [f["cast"] for f in board["frames"]] == [["Mara"], ["ilya"]]  # who speaks or is named
        assert [f["dialogue"] for f in board["frames"]] == [
            "Mara: Ilya? Are you up there?", "Ilya: (quietly) The ships are coming."]
        expect(page.locator("#board .panel .panel-dialogue")).to_have_text([f["dialogue"] for f in board["frames"]])
        page.locator("#board .panel[data-index='2'] .panel-open").click()
        details = page.evaluate(DIALOG_DETAILS)
        assert details["Dialogue"] == board["frames"][1]["dialogue"]
        assert details["On screen"] == f"{board['frames'][1]['duration']:.2f} s (reading time)"
        page.keyboard.press("Escape")

        # The animatic: the first panel, paused, until the test moves the clock.
        first, second = board["frames"]
        page.click("#animatic-open")
        expect(page.locator("#animatic-dialog")).to_be_visible()
        expect(page.locator("#animatic-stage")).to_be_focused()
        page.clock.pause_at(page.evaluate("Date.now()") + 1000)
        expect(page.locator("#animatic-stage")).to_have_attribute("data-index", "1")
        expect(page.locator("#animatic-caption")).to_have_text(first["caption"])
        page.keyboard.press(" ")  # Space plays
        expect(page.locator("#animatic-play")).to_have_text("Pause")
        page.clock.run_for(int(first["duration"] * 1000) - 200)
        assert page.evaluate(ANIMATIC_SHOWS)["index"] == "1"
        page.clock.run_for(400)
        assert page.evaluate(ANIMATIC_SHOWS) == {"index": "2", "caption": second["caption"],
                                                  "dialogue": second["dialogue"], "playing": "true"}
        page.clock.run_for(int(second["duration"] * 1000) + 500)  # past the end: it stops there
        assert page.evaluate(ANIMATIC_SHOWS)["playing"] == "false"
        total = board["duration"]
        expect(page.locator("#animatic-time")).to_have_text(f"0:{total:04.1f} / 0:{total:04.1f}")
        page.screenshot(path=str(artifacts / "animatic.png"))

        # Keys and the scrub bar move it by hand.
        page.keyboard.press("Home")
        expect(page.locator("#animatic-stage")).to_have_attribute("data-index", "1")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#animatic-stage")).to_have_attribute("data-index", "2")
        page.keyboard.press("ArrowLeft")  # at panel 2's start: back to panel 1
        expect(page.locator("#animatic-stage")).to_have_attribute("data-index", "1")
        page.evaluate("""(seconds) => { const scrub = document.getElementById("animatic-scrub");
            scrub.value = String(seconds); scrub.dispatchEvent(new Event("input", {bubbles: true})); }""",
                      second["start"] + 0.1)
        expect(page.locator("#animatic-stage")).to_have_attribute("data-index", "2")

        # Panel 2's duration set in the player, then back to its reading time; the frame rate.
        duration = page.locator("#animatic-duration")
        expect(duration).to_have_value(f"{round(second['duration'], 3):g}")
        duration.fill("3.5")
        duration.press("Enter")
        _poll(lambda: api.get(f"/api/storyboards/{board_id}").json()["frames"][1]["duration_set"],
              message="panel 2's duration to be stored")
        stored = api.get(f"/api/storyboards/{board_id}").json()
        assert stored["frames"][1]["duration"] == 3.5 and stored["duration"] == first["duration"] + 3.5
        expect(page.locator("#animatic-time")).to_contain_text(f"/ 0:{first['duration'] + 3.5:04.1f}")
        page.click("#animatic-duration-reset")
        expect(duration).to_have_value(f"{round(second['duration'], 3):g}")
        page.select_option("#animatic-fps", "25")
        _poll(lambda: api.get(f"/api/storyboards/{board_id}").json()["fps"] == 25, message="the board's fps")
        page.keyboard.press("Escape")
        expect(page.locator("#animatic-dialog")).to_be_hidden()

        # A script of two scenes offers them; the second fills the form instead.
        page.fill("#screenplay-text", FOUNTAIN_SCENE + "\nEXT. HARBOUR - DAWN\n\nThe ships come in.\n")
        page.click("#screenplay-read")
        expect(page.locator("#screenplay-scene option")).to_have_text(
            ["1. INT. LIGHTHOUSE - NIGHT", "2. EXT. HARBOUR - DAWN"])
        page.select_option("#screenplay-scene", "1")
        expect(page.locator("#story")).to_have_value("EXT. HARBOUR - DAWN")
        expect(rows).to_have_count(1)
        expect(_plan_row(page, 1).locator(".plan-caption")).to_have_value("The ships come in.")
        watch.assert_clean(answered=(400,))
    except Exception as error:
        raise AssertionError(f"{error}\n--- what the server says ---\n{_server_state(page)}") from error
    finally:
        watch.close()


def test_a_sketched_panel_and_a_posed_one_are_drawn_and_exported(browser, server, artifacts):
    """Issue 23 end to end on the tiny models: in a plan, panel 1 is sketched and panel 2 poses
    Mara and Ilya; drawn, each panel has its layout (kind, the studio's default strength, its
    adapter, its picture) on the board, over its picture at its toggle, in its details, and in
    the ZIP."""
    from playwright.sync_api import expect

    watch = PageWatch(browser, server, viewport={"width": 1280, "height": 900})
    page = watch.page
    api = page.request
    try:
        page.goto("/")
        expect(page.locator("#preset option")).not_to_have_count(0)
        page.fill("#story", "\n".join(LAYOUT_LINES))
        page.select_option("#preset", "ultra_fast")
        page.fill("#seed", "3")
        page.fill("#character-name", "Mara")
        page.fill("#character", MARA)
        page.click("#cast-add")
        page.fill("#character-name-2", "Ilya")
        page.fill("#character-2", ILYA)
        page.click("#plan")
        expect(page.locator("#plan-rows .plan-row")).to_have_count(2)

        _plan_row(page, 1).locator(".plan-layout-edit").click()
        box = page.evaluate(CANVAS_BOX, "#sketch-canvas")
        _mouse_stroke(page, box, [(0.1, 0.8), (0.5, 0.2), (0.9, 0.8)])
        _mouse_stroke(page, box, [(0.3, 0.9), (0.7, 0.9)])
        page.click("#layout-apply")

        _plan_row(page, 2).locator(".plan-layout-edit").click()
        page.click("#layout-tab-pose")
        box = page.evaluate(CANVAS_BOX, "#pose-canvas")
        poses = page.evaluate("async () => (await import('/static/js/pose.js')).POSES")
        wrist = _starting_pose(poses, "standing", 2 / 3, box["cw"], box["ch"])[4]
        _mouse_stroke(page, box, [(wrist[0] / box["cw"], wrist[1] / box["ch"]), (0.85, 0.25)])
        page.select_option("#pose-figure", "0")
        page.click("#pose-starts button[data-pose='pointing']")
        page.click("#layout-apply")
        expect(page.locator("#plan-rows .plan-layout")).to_have_text(["sketch", "pose of Mara, Ilya"])

        page.click("#draw-plan")
        expect(page.locator("#board .panel")).to_have_count(2)
        page.wait_for_function(ALL_PANELS_LOADED, arg=2, timeout=BOARD_TIMEOUT_MS)
        expect(page.locator("#board-status")).to_have_text("done")
        board = api.get(f"/api/storyboards/{in_page(page, 'return m.state.boardId;')}").json()
        sketch, pose = (frame["layout"] for frame in board["frames"])
        assert (sketch["kind"], sketch["adapter"]) == ("sketch", "TencentARC/t2i-adapter-sketch-sdxl-1.0")
        assert (pose["kind"], pose["adapter"]) == ("pose", "TencentARC/t2i-adapter-openpose-sdxl-1.0")
        assert [p["character"] for p in pose["poses"]] == ["Mara", "Ilya"]
        assert pose["poses"][1]["keypoints"][4] == pytest.approx([0.85, 0.25], abs=0.01)
        for layout in (sketch, pose):
            assert 0 <= layout["strength"] <= 1 and 0 < layout["factor"] <= 1
            assert api.get(layout["image"]).body().startswith(b"\x89PNG")

        # On the board: each panel's toggle lays its layout over its picture.
        for n, layout, label in ((1, sketch, "Sketch"), (2, pose, "Pose")):
            panel = page.locator(f"#board .panel[data-index='{n}']")
            toggle = panel.locator(".layout-toggle")
            expect(toggle).to_have_text(label)
            toggle.click()
            overlay = panel.locator("img.panel-layout")
            expect(overlay).to_have_attribute("src", layout["image"])
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=overlay.element_handle())
        page.locator("#board").screenshot(path=str(artifacts / "layout-board.png"))

        # In the details: what the panel followed, and its picture.
        page.locator("#board .panel[data-index='2'] .panel-open").click()
        assert page.evaluate(DIALOG_DETAILS)["Layout"] == (
            f"pose of Mara, Ilya · strength {pose['strength']:.2f} · "
            + ("on every step" if pose["factor"] >= 1 else f"on the first {round(pose['factor'] * 100)}% of the steps")
            + " · TencentARC/t2i-adapter-openpose-sdxl-1.0")
        expect(page.locator("#panel-dialog-details .layout-image")).to_have_attribute("src", pose["image"])
        page.keyboard.press("Escape")

        # Panel 1's stored sketch opens as dark lines on paper; a line more redraws it with its
        # seed, as a new take with the new layout.
        page.locator("#board .panel[data-index='1'] .layout-edit").click()
        _poll(lambda: 0 < page.evaluate(DARK_PIXELS) < 0.1 * box["cw"] * box["ch"], message="the stored sketch")
        box = page.evaluate(CANVAS_BOX, "#sketch-canvas")
        _mouse_stroke(page, box, [(0.2, 0.2), (0.4, 0.2)])
        page.click("#layout-apply")
        redrawn = _poll(lambda: (b := api.get(f"/api/storyboards/{board['id']}").json())["status"] == "done"
                        and len(b["frames"][0]["takes"]) == 2 and b, timeout=BOARD_TIMEOUT_MS / 1000,
                        message="panel 1 to be redrawn with its new sketch")
        assert redrawn["frames"][0]["seed"] == board["frames"][0]["seed"]
        assert redrawn["frames"][0]["layout"]["image"] != sketch["image"]
        page.wait_for_function(ALL_PANELS_LOADED, arg=2, timeout=TIMEOUT_MS)
        page.locator("#board .panel[data-index='1'] .panel-open").click()
        expect(page.locator("#panel-dialog-details .take")).to_have_count(2)
        for take in page.locator("#panel-dialog-details .take > span").all_text_contents():
            assert "following its sketch" in take  # each take keeps the layout it was drawn with
        page.keyboard.press("Escape")

        # In the ZIP: each panel's layout picture beside its PNG, named in storyboard.json.
        zipped = api.get(page.locator("#export-zip").get_attribute("href"))
        with zipfile.ZipFile(io.BytesIO(zipped.body())) as archive:
            assert {"layout-01.png", "layout-02.png"} <= set(archive.namelist())
            assert all(archive.read(name).startswith(b"\x89PNG") for name in ("layout-01.png", "layout-02.png"))
            exported = json.loads(archive.read("storyboard.json").decode("utf-8"))
        assert [(f["layout"]["kind"], f["layout"]["file"]) for f in exported["frames"]] == [
            ("sketch", "layout-01.png"), ("pose", "layout-02.png")]
        watch.assert_clean()
    except Exception as error:
        raise AssertionError(f"{error}\n--- what the server says ---\n{_server_state(page)}") from error
    finally:
        watch.close()
