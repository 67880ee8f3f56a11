"""The planner's routes: a premise in, an editable plan out (nothing is drawn or stored).

    POST /api/plans    {"premise", "frames"?, "characters"?: [{"name", "traits"}]}
                       -> {"source", "notices", "panels": [{"caption", "scene", "shot", "dialogue", "cast"}]}
    GET  /api/planner  -> whether an LLM plans, and which (never the key)

Registered by ``app.create_app``. Every input error is an ``errors.InputError``, which the
app's one handler answers.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from board_params import Character, read_cast
from config import MAX_FRAMES
from errors import InputError
from planner import ChatClient, plan_premise, planner_client
from prompt_enhancer import StoryPlan
from studio import current_studio
from web_input import int_field, json_body, text_field

plans = Blueprint("plans", __name__)


@plans.post("/api/plans")
def create_plan():
    studio = current_studio()
    settings = studio.settings
    body = json_body()
    if not isinstance(body, dict):
        raise InputError("body", "Send a JSON object: {\"premise\": \"...\", \"frames\": 6, \"characters\": [...]}.")
    premise = text_field(body, "premise", "", limit=settings.max_story_chars)
    if not premise:
        raise InputError("premise", "Write a premise: a few sentences, or one line per panel.")
    frames = int_field(body, "frames", 1, MAX_FRAMES, None)
    cast = read_cast(body.get("characters"), planning=True)  # the boards' cast: a plan a board cannot take is refused
    client = planner_client(settings)
    if client is None:  # the built-in splitter: nothing to wait for
        return jsonify(plan_json(plan_premise(premise, frames, cast, max_frames=MAX_FRAMES), bool(cast)))
    return jsonify(plan_json(llm_plan(premise, frames, cast, client), planned_with_cast=bool(cast)))


def llm_plan(premise: str, frames: int | None, cast: tuple[Character, ...], client: ChatClient) -> StoryPlan:
    """:func:`planner.plan_premise` with the LLM behind ``client``, for a plan and for a board
    made from a premise alike."""
    studio = current_studio()
    settings = studio.settings
    # Each call holds a server thread until the planner answers (at most its timeout): a few at
    # once, and the rest told so at once rather than queued behind them.
    if not studio.planner_slots.acquire(blocking=False):
        raise InputError("planner", f"The planner is busy with {settings.planner_concurrency} plan(s); try again "
                                    "in a moment (STORYBOARD_PLANNER_CONCURRENCY).", status=429)
    try:
        return plan_premise(premise, frames, cast, client=client, json_mode=settings.planner_json_mode,
                            max_frames=MAX_FRAMES)
    finally:
        studio.planner_slots.release()


@plans.get("/api/planner")
def planner_info():
    client = planner_client(current_studio().settings)
    if client is None:
        return jsonify(llm=False, model=None, server=None)
    return jsonify(llm=True, model=client.model, server=client.server)


def plan_json(plan: StoryPlan, planned_with_cast: bool) -> dict:
    """The plan as the API shows it. A plan made without a cast knows no one's name, so its
    panels' ``cast`` is null (whoever a panel's words name, once a board has a cast), never
    [], which a board reads as no one."""
    return {
        "source": plan.source,
        "notices": list(plan.notices),
        "panels": [{"caption": p.caption, "scene": p.scene, "shot": p.shot, "dialogue": p.dialogue,
                    "cast": list(p.cast) if planned_with_cast else None}
                   for p in plan.panels],
    }
