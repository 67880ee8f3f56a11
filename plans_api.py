"""The planner's routes: a premise in, an editable plan out (nothing is drawn or stored).

    POST /api/plans    {"premise", "frames"?, "characters"?: [{"name", "traits"}]}
                       -> {"source", "notices", "panels": [{"caption", "scene", "shot", "cast"}]}
    GET  /api/planner  -> whether an LLM plans, and which (never the key)

Registered by ``app.create_app``. Input is read with web_input (the FieldError the app
answers); the planner's own validation raises StoryError, answered in the same shape.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from config import MAX_FRAMES
from planner import Plan, plan_premise, planner_client, validated_cast
from prompt_enhancer import StoryError
from web_input import FieldError, int_field, json_body, text_field

plans = Blueprint("plans", __name__)


@plans.errorhandler(StoryError)
def _input_error(error: StoryError):
    return jsonify(error=str(error), field=error.field), 400


@plans.post("/api/plans")
def create_plan():
    settings = current_app.extensions["studio"]["settings"]
    body = json_body()
    if not isinstance(body, dict):
        raise FieldError("body", "Send a JSON object: {\"premise\": \"...\", \"frames\": 6, \"characters\": [...]}.")
    premise = text_field(body, "premise", "", limit=settings.max_story_chars)
    if not premise:
        raise FieldError("premise", "Write a premise: a few sentences, or one line per panel.")
    frames = int_field(body, "frames", 1, MAX_FRAMES, None)
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
