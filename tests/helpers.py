import io
import time

from PIL import Image


def wait_for(client, board_id, statuses=("done", "failed", "canceled", "interrupted"), timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        board = client.get(f"/api/storyboards/{board_id}").get_json()
        if board["status"] in statuses:
            return board
        time.sleep(0.05)
    raise AssertionError(f"board {board_id} stayed {board['status']}")


def wait_until(condition, message: str, timeout: float = 120.0):
    """Poll ``condition`` until it returns something true (a state another thread reaches)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def png_bytes(size=(32, 32), color="red", fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()
