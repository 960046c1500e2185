"""The texts gl runs models on: evaluation and calibration never share text."""

from __future__ import annotations

import pytest

from gl_plugins.toolchain import texts


def test_evaluation_and_calibration_are_disjoint_slices():
    assert not set(texts.EVALUATION_TOPICS) & set(texts.CALIBRATION_TOPICS)
    ev, cal = texts.text("evaluation"), texts.text("calibration")
    assert len(ev) > 60_000 and len(cal) > 100_000  # enough for 4 x 512 and 8 x 512 tokens
    # no passage of one appears in the other (the topics share only their "See also" cross-references)
    sentences = {s.strip() for s in ev.split(".") if len(s.strip()) > 80 and "See also" not in s}
    assert len(sentences) > 300 and not [s for s in sentences if s in cal]
    assert texts.text("perplexity") == ev[:texts.PERPLEXITY_CHARS]


def test_slices_are_cached_by_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("GL_CACHE", str(tmp_path))
    path = texts.text_file("calibration")
    assert path.read_text() == texts.text("calibration") and texts.digest("calibration") in path.name
    assert texts.text_file("calibration") == path
    with pytest.raises(ValueError, match="unknown text slice 'training'"):
        texts.text("training")
