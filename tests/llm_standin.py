"""A stand-in for an OpenAI-compatible LLM server, on loopback, for the planner's tests.

It records every request (path, headers, JSON body) and answers from a script: each request
takes the next answer, and the last one repeats. Answers are small functions of the stand-in
and the handler, built by the helpers below. ``slow()`` waits on an Event that the fixture
sets at teardown, so a test of the timeout never races a sleep.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class StandIn:
    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[Callable] = [plan_answer(3)]
        self.release = threading.Event()
        self.hung_up = threading.Event()  # the studio closed a connection mid-answer (trickle_answer)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # serve_forever checks for shutdown between polls; 0.5 s (its default) per test adds up.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="llm-standin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def answer(self, *answers: Callable) -> None:
        self.script = list(answers)

    def start(self) -> "StandIn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()  # a slow answer ends now, so shutdown does not wait on it
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next(self) -> Callable:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def _handler_for(standin: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            with standin._lock:
                standin.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                         "body": parsed})
            try:
                standin._next()(standin, self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the studio gave up waiting (the timeout test): nobody is listening

        def send(self, status: int, data: bytes, content_type: str = "application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the test output clean
            pass

    return Handler


# --- Answers -------------------------------------------------------------------------------


def completion(content: str | None, finish_reason: str = "stop", refusal: str | None = None) -> bytes:
    message = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "stand-in",
                       "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]},
                      ensure_ascii=False).encode()


def text_answer(content: str | None, finish_reason: str = "stop") -> Callable:
    return lambda standin, handler: handler.send(200, completion(content, finish_reason))


def json_answer(data) -> Callable:
    return text_answer(json.dumps(data, ensure_ascii=False))


SHOTS = ("establishing shot", "close-up", "medium shot", "low-angle shot", "wide shot", "high-angle shot",
         "over-the-shoulder shot", "extreme close-up")


def panels(n: int, cast=(), caption="Panel {i} of the story.", scene="A hillside at dawn, moment {i}.") -> list[dict]:
    return [{"caption": caption.format(i=i), "scene": scene.format(i=i), "shot": SHOTS[(i - 1) % len(SHOTS)],
             "cast": list(cast)} for i in range(1, n + 1)]


def plan_answer(n: int, **kwargs) -> Callable:
    return json_answer({"panels": panels(n, **kwargs)})


def status_answer(status: int, body: bytes = b'{"error": {"message": "it went wrong"}}') -> Callable:
    return lambda standin, handler: handler.send(status, body)


def raw_answer(data: bytes, content_type: str = "text/html") -> Callable:
    return lambda standin, handler: handler.send(200, data, content_type)


def refusal_answer(words: str) -> Callable:
    return lambda standin, handler: handler.send(200, completion(None, refusal=words))


def slow_answer(then: Callable | None = None) -> Callable:
    def answer(standin, handler):
        standin.release.wait()
        (then or plan_answer(3))(standin, handler)

    return answer


def trickle_answer(what: str, then: Callable | None = None, beats: int = 400) -> Callable:
    """A server that keeps the connection busy without answering: ``processing`` sends
    ``102 Processing`` over and over, ``headers`` its status line a byte at a time, ``body``
    a long answer a byte at a time; a beat every 0.05 s (each read's own timeout never
    expires), ``beats`` times (20 s) or until the fixture's teardown, then ``then``.
    ``hung_up`` is set when the studio closes the connection meanwhile."""
    def answer(standin, handler):
        try:
            if what == "body":
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(beats + 1))
                handler.end_headers()
            for beat in range(beats):
                if standin.release.wait(0.05):
                    return
                handler.wfile.write({"processing": b"HTTP/1.1 102 Processing\r\n\r\n",
                                     "headers": b"HTTP/1.1 200 OK\r\nX-Wait: "[beat:beat + 1] or b"w",
                                     "body": b" "}[what])
        except (BrokenPipeError, ConnectionResetError):
            standin.hung_up.set()
            return
        (then or plan_answer(3))(standin, handler)

    return answer
