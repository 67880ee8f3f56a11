"""The cut (cut.py): panels on whole frames, and the captions as WebVTT and SRT."""

from fractions import Fraction

from cut import DEFAULT_PANEL_SECONDS, Cut, srt, webvtt


def board(frames, **extra):
    return {"id": "b1", "title": "Test", "settings": {"aspect": "16:9"}, "frames": frames, **extra}


def test_panels_start_where_the_running_total_of_durations_falls():
    cut = Cut.from_board(board([{"id": 1, "caption": "a", "duration": 1.02},
                                {"id": 2, "caption": "b", "duration": 1.02},
                                {"id": 3, "caption": "c", "duration": 1.02}]))
    # 1.02 s is 24.48 frames: rounding each panel alone would lose a frame and a half.
    assert [(p.start, p.frames) for p in cut.panels] == [(0, 24), (24, 25), (49, 24)]
    assert cut.frames == round(3 * 1.02 * 24)


def test_a_board_without_timing_holds_each_panel_the_default_at_24_fps():
    cut = Cut.from_board(board([{"id": 1, "caption": "a"}, {"id": 2, "caption": "b"}]))
    assert cut.fps == 24 and [p.frames for p in cut.panels] == [DEFAULT_PANEL_SECONDS * 24] * 2


def test_a_panel_shorter_than_a_frame_is_still_seen_for_one():
    cut = Cut.from_board(board([{"id": 1, "caption": "a", "duration": 0.001}]))
    assert cut.panels[0].frames == 1


def test_the_aspect_is_the_boards():
    assert Cut.from_board({**board([]), "settings": {"aspect": "9:16"}}).aspect == (9, 16)
    assert Cut.from_board({**board([]), "settings": {"width": 1152, "height": 896}}).aspect == (1152, 896)


def test_webvtt_cues_follow_the_panels_frames_and_skip_panels_without_text():
    cut = Cut.from_board(board([{"id": 1, "caption": "A <b> & c", "duration": 1.5},
                                {"id": 2, "caption": "", "duration": 1},
                                {"id": 3, "caption": "Bob waves", "dialogue": "BOB: Hi!\n\nthere", "duration": 2}]))
    text = webvtt(cut)
    assert text.startswith("WEBVTT\n\n")
    assert "00:00:00.000 --> 00:00:01.500\nA &lt;b> &amp; c\n" in text
    # A blank line inside a cue would end it: the dialogue's lines are kept together.
    assert "00:00:02.500 --> 00:00:04.500\nBob waves\nBOB: Hi!\nthere\n" in text
    assert "panel-2" not in text


def test_srt_numbers_its_cues_from_one_with_comma_milliseconds():
    cut = Cut.from_board(board([{"id": 1, "caption": "", "duration": 1}, {"id": 2, "caption": "Ночь", "duration": 1}]))
    assert srt(cut) == "1\n00:00:01,000 --> 00:00:02,000\nНочь\n"


def test_times_are_exact_at_a_rate_that_is_not_whole():
    cut = Cut(board_id="b", title="t", fps=23.976, rate=Fraction(24000, 1001), aspect=(16, 9), panels=())
    assert cut.seconds_at(24000) == Fraction(1001)
