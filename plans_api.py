"""The planner's routes: a premise in, an editable plan out (nothing is drawn or stored).

    POST /api/plans    {"premise", "frames"?, "characters"?: [{"name", "traits"}]}
                       -> {"source", "notices", "panels": [{"caption", "scene", "shot", "cast"}]}
    GET  /api/planner  -> whether an LLM plans, and which (never the key)

Registered by ``app.create_app``. This module does not import ``app``: run as a script,
app.py is ``__main__``, and a second copy of its FieldError would not reach its handler.
Input errors are StoryError here, answered in the studio's error shape.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from config import MAX_FRAMES
from planner import Plan, plan_premise, planner_client, validated_cast
from prompt_enhancer import StoryError

plans = Blueprint("plans", __name__)


@plans.errorhandler(StoryError)
def _input_error(error: StoryError):
    return jsonify(error=str(error), field=error.field), 400


@plans.post("/api/plans")
def create_plan():
    settings = current_app.extensions["studio"]["settings"]
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise StoryError("body", "Send a JSON object: {\"premise\": \"...\", \"frames\": 6, \"characters\": [...]}.")
    premise = _premise(body.get("premise"), settings.max_story_chars)
    frames = _frames(body.get("frames"))
    cast = validated_cast(body.get("characters"))
    plan = plan_premise(premise, frames, cast, client=planner_client(settings),
                        json_mode=settings.planner_json_mode, max_frames=MAX_FRAMES)
    return jsonify(plan_json(plan))


@plans.get("/api/planner")
def planner_info():
    client = planner_client(current_app.extensions["studio"]["settings"])
    if client is None:
        return jsonify(llm=False, model=None, server=None)
    return jsonify(llm=True, model=client.model, server=client.server)


def plan_json(plan: Plan) -> dict:
    return {
        "source": plan.source,
        "notices": list(plan.notices),
        "panels": [{"caption": p.caption, "scene": p.scene, "shot": p.shot, "cast": list(p.cast)}
                   for p in plan.panels],
    }


def _premise(value, limit: int) -> str:
    if value is None or isinstance(value, str) and not value.strip():
        raise StoryError("premise", "Write a premise: a few sentences, or one line per panel.")
    if not isinstance(value, str):
        raise StoryError("premise", "premise must be text.")
    if len(value) > limit:
        raise StoryError("premise", f"premise is too long ({len(value)} characters; at most {limit}).")
    return value.strip()


def _frames(value) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FRAMES:
        raise StoryError("frames", f"frames must be a whole number from 1 to {MAX_FRAMES}.")
    return value
