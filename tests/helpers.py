import io
import time

from PIL import Image

STORY = "A girl finds a map.\nShe climbs the hill.\nA storm breaks."


def post_board(client, story=STORY, **fields):
    """POST /api/storyboards as JSON (seed 7 unless given); the answer, whatever its status."""
    return client.post("/api/storyboards", json={"story": story, "seed": 7, **fields})


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


REAL_MODEL = "real"  # build_app(load_generator=REAL_MODEL): the studio's own loader, as `make run` loads


def build_app(data_dir, generator=None, *, load_generator=None, env=None, start_worker=True, **settings):
    """A studio on ``data_dir`` (the tiny model, no identity scoring and 1 MB uploads unless
    ``settings`` say otherwise) drawing with ``generator``, a FakeGenerator when None. Stop
    its backend after (the make_app fixture does)."""
    from app import create_app
    from config import load_settings
    from fakes import FakeGenerator

    values = {"data_dir": str(data_dir), "model": "tiny", "identity_scoring": False, "max_upload_mb": 1, **settings}
    if load_generator == REAL_MODEL:
        load_generator = None
    elif load_generator is None:
        generator = FakeGenerator() if generator is None else generator
        load_generator = lambda: generator  # noqa: E731
    return create_app(load_settings(env or {}, values), load_generator=load_generator, start_worker=start_worker)


def unet_batches(generator, fn):
    """(the batch size of each UNet call while ``fn`` runs, what ``fn`` returned)."""
    batches = []
    hook = generator.pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(args[0].shape[0]), with_kwargs=True)
    try:
        result = fn()
    finally:
        hook.remove()
    return batches, result
