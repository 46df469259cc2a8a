"""convdrop.errors: one line per problem, whatever the value in it and wherever it is raised."""

from __future__ import annotations

import os
import socket
import warnings

import pytest

from convdrop.errors import (
    MissingFileError,
    SpecError,
    clip,
    clip_values,
    file_problem,
    one_line_warnings,
    warning_line,
)


def test_a_long_quoted_value_is_cut_with_its_length():
    text = str(SpecError(f"model {'x' * 100_000!r} could not be built; expected a name"))
    assert text == f"model '{'x' * 200}…' (100,000 characters) could not be built; expected a name"


def test_every_user_error_cuts_long_values_and_short_ones_stay():
    path = "/" + "deep/" * 100
    text = str(MissingFileError(f"weights file {path} does not exist"))
    assert text.endswith("… (501 characters) does not exist") and len(text) < 300
    assert str(SpecError("epochs: got 'a b' (short)")) == "epochs: got 'a b' (short)"


def test_prose_with_apostrophes_is_not_taken_for_a_quoted_value():
    prose = "this run's " + "word " * 100 + "isn't cut"
    assert clip_values(prose) == prose


def test_clip_keeps_short_text():
    assert clip("short") == "short" and clip("y" * 201).endswith("y… (201 characters)")


def test_a_warning_is_one_line_without_the_source_line():
    with one_line_warnings("convdrop compare"), warnings.catch_warnings():
        warnings.simplefilter("always")
        text = warnings.formatwarning("folder:/d has no test/ folder;\nthe val/ images stand in",
                                      UserWarning, __file__, 10, "warnings.warn(...)")
    assert text == ("convdrop compare: warning: folder:/d has no test/ folder; the val/ images "
                    "stand in\n")
    assert warnings.formatwarning("x", UserWarning, __file__, 10, "src") != text  # restored


def test_a_warning_of_another_kind_says_its_kind():
    assert warning_line("deprecated", DeprecationWarning) == (
        "convdrop: warning: deprecated (DeprecationWarning)")


def test_file_problem_says_what_a_path_is(tmp_path):
    (tmp_path / "f").write_text("x")
    assert file_problem(tmp_path / "f") is None
    assert file_problem(tmp_path / "nope") == "does not exist"
    assert file_problem(tmp_path) == "is a directory, not a file"
    assert file_problem(os.devnull) == "is a character device, not a regular file"
    os.mkfifo(tmp_path / "fifo")
    assert file_problem(tmp_path / "fifo") == "is a named pipe, not a regular file"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        assert file_problem(tmp_path / "sock") == "is a socket, not a regular file"


@pytest.mark.parametrize("size", [201, 100_000])
def test_the_cut_names_the_full_length(size):
    assert f"({size:,} characters)" in clip_values("got " + "z" * size)
