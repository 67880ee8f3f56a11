"""A request's board, panel, take and files, as the routes (app.py and its blueprints) find
them: each missing one a 404, and a file a redraw replaced meanwhile read again, never a 500.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Response, abort, send_file

from studio import current_studio


def board_or_404(board_id: str) -> dict:
    board = current_studio().store.board(board_id)
    if board is None:
        abort(404)
    return board


def frame_of(board: dict, frame_id: int) -> dict:
    frame = next((f for f in board["frames"] if f["id"] == frame_id), None)
    if frame is None:
        abort(404)
    return frame


def take_of(frame: dict, take_id: int) -> dict:
    take = next((t for t in frame["takes"] if t["id"] == take_id), None)
    if take is None:
        abort(404)
    return take


def on_current_board(board_id: str, read: Callable[[dict], Any]) -> Any:
    """``read(board)`` on the board as it is now. A redraw may replace a panel's file (and
    remove the old one) between reading the board and opening the file, and ``read`` then
    raises FileNotFoundError: once more on the board as it is after the redraw. A board
    deleted meanwhile is a 404."""
    for _ in range(2):
        try:
            return read(board_or_404(board_id))
        except FileNotFoundError:
            continue
    abort(404)


def send_png(board_id: str, file_of: Callable[[dict], str | None]) -> Response:
    """The PNG that ``file_of(board)`` names (None: the board has none: 404)."""

    def send(board: dict) -> Response:
        name = file_of(board)
        if name is None:
            abort(404)
        path = current_studio().store.file_path(board_id, name)
        if path is None:
            raise FileNotFoundError(name)
        return send_file(path, mimetype="image/png", max_age=0)  # opens it, or FileNotFoundError

    return on_current_board(board_id, send)
