"""The cut (cut.py): panels on whole frames, and the captions as WebVTT and SRT."""

from fractions import Fraction

from cut import Cut, srt, webvtt


def board(frames, fps=24.0, **extra):
    return {"id": "b1", "title": "Test", "fps": fps, "settings": {"aspect": "16:9"}, "frames": frames, **extra}


def test_panels_are_end_to_end_in_whole_frames_of_the_boards_rate():
    cut = Cut.from_board(board([{"id": 1, "caption": "a", "duration": 1.0},
                                {"id": 2, "caption": "b", "duration": 2.5},
                                {"id": 3, "caption": "c", "duration": 0.041667}]))
    assert [(p.start, p.frames) for p in cut.panels] == [(0, 24), (24, 60), (84, 1)]
    assert cut.frames == 85 and cut.seconds == Fraction(85, 24)


def test_an_ntsc_rate_is_exact():
    # timing.py gives 2.002 s for 48 frames at 23.976 (24000/1001): the cut reads 48 frames back.
    cut = Cut.from_board(board([{"id": 1, "caption": "a", "duration": 2.002}], fps=23.976))
    assert cut.rate == Fraction(24000, 1001) and cut.panels[0].frames == 48
    assert cut.seconds == Fraction(2002, 1000)


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
