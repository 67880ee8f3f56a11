"""The JSON API described as an OpenAPI 3.1 document (served at ``GET /api/openapi.json``).

Written by hand, next to the routes it describes; ``tests/test_openapi.py`` compares its paths
and methods with the app's real routes both ways, so a route added without a description (or a
description left after its route is gone) fails the tests. The choices (speed modes, aspect
ratios, panel count) come from config.py, so they cannot drift either.
"""

from __future__ import annotations

from animatic import DEFAULT_RESOLUTION, RESOLUTIONS
from board_params import MAX_CHARACTERS, MAX_NAME_CHARS, MAX_SEED
from config import ASPECTS, DECODERS, MAX_FRAMES, PRESETS, REFINE_DEFAULT_PRESET, REFINE_PRESETS
from layouts import JOINTS, KINDS, LAYOUT_KINDS, MAX_SKETCH_BYTES
from timing import DEFAULT_FPS, FRAME_RATES, MAX_SECONDS

OPENAPI_VERSION = "3.1.0"
STATUSES = ["queued", "running", "done", "failed", "canceled", "interrupted"]
FRAME_STATUSES = ["pending", "queued", "running", "done", "failed"]
ERROR_WORDS = {
    400: "A field is missing or wrong; `field` names it.",
    403: "Refused: a request from another site, or a host name other than the studio's own.",
    404: "No such storyboard, panel or image.",
    409: "Not possible in the storyboard's current state (e.g. resuming a running board).",
    413: "The request (the reference upload) is too large.",
    429: "Busy: the queue is full (try again when some storyboards have finished), or the planner is "
         "answering as many plans, or the studio writing as many exports, as it may at once (try again "
         "in a moment).",
    500: "Something went wrong in the studio; the details are in the server log.",
    503: "The job queue (Redis) cannot be reached; nothing was stored. Try again when it is back.",
    507: "The disk is full: nothing was stored. Free some space and try again.",
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    return {str(code): {"$ref": f"#/components/responses/Error{code}"} for code in codes}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


BOARD_ID = {"name": "board_id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "The storyboard's id."}
POSITION = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1},
            "description": "The panel's position on the board (1-based, display order)."}
FRAME_ID = {"name": "frame_id", "in": "path", "required": True, "schema": {"type": "integer"},
            "description": "The panel's stable id (a frame's `id`, not its position)."}
TAKE_ID = {"name": "take_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1},
           "description": "The take's id within its panel (a take's `id`)."}
REFINE_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {
        "preset": {"enum": list(REFINE_PRESETS), "default": REFINE_DEFAULT_PRESET,
                   "description": "The speed mode of the new take (SDXL img2img at its steps and scales)."},
        "strength": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                     "description": "How far it may move from the take: it runs strength x steps steps. Missing: "
                                    "STORYBOARD_REFINE_STRENGTH (0.35)."}}}}}}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "An animatic job's id, from its links."}
CHARACTER = {"name": "character", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_CHARACTERS},
             "description": "The character's place in the board's `characters` (1-based)."}
CAST = {"type": "array", "maxItems": MAX_CHARACTERS, "items": {"type": "string"},
        "description": "Who is in the panel: names from the board's characters (any case), [] for no one. "
                       "The one unnamed character of a board made with `character` is \"\"."}


_POSE = {"type": "object", "required": ["character", "keypoints"], "properties": {
    "character": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
                  "description": "A name of the panel's cast (any case), or its place in the panel's cast "
                                 "(0-based; \"\" or 0 for the one unnamed character)."},
    "keypoints": {"type": "array", "minItems": len(JOINTS), "maxItems": len(JOINTS),
                  "items": _nullable({"type": "array", "minItems": 2, "maxItems": 2,
                                      "items": {"type": "number", "minimum": 0, "maximum": 1}}),
                  "description": "The 18 OpenPose body joints in COCO order (" + ", ".join(JOINTS) + "): [x, y] "
                                 "in 0..1 of the panel's width and height, or null where hidden; at least two."}}}
LAYOUT_SCHEMAS = {
    "NewLayout": {
        "type": "object", "required": ["kind"],
        "description": "Direct the shot: a sketch of the composition, or a skeleton per character present. A "
                       "T2I-Adapter makes the panel follow it (layouts.py).",
        "properties": {
            "kind": {"enum": list(KINDS)},
            "strength": {"type": "number", "minimum": 0, "maximum": 1,
                         "description": "How closely to follow it (the adapter's conditioning scale). Missing: " +
                                        ", ".join(f"{k} {v.strength}" for k, v in LAYOUT_KINDS.items()) + "."},
            "image": {"type": "string", "description": "A sketch: a data URL of a PNG, JPEG or WebP (at most "
                      f"{MAX_SKETCH_BYTES // 2**20} MB, 4096x4096), lines only, dark on light or light on dark; "
                      "in a form, the file layout_<i> instead."},
            "poses": {"type": "array", "items": _POSE, "description": "A pose: one skeleton per character in the "
                      "panel; with several, each one's identity lock and place in the prompt follow its skeleton."}}},
    "Layout": {
        "type": "object", "description": "A stored layout.",
        "properties": {
            "kind": {"enum": list(KINDS)},
            "strength": {"type": "number", "description": "adapter_conditioning_scale."},
            "factor": {"type": "number", "description": "adapter_conditioning_factor: the share of the steps "
                                                        "the adapter steers (at least one)."},
            "adapter": {"type": "string", "description": "The T2I-Adapter's hub id."},
            "poses": {"type": "array", "items": _POSE},
            "image": {"type": "string", "description": "The layout picture: the sketch, or the pose drawn."}}},
}


def _schemas() -> dict:
    string, integer, number, boolean = ({"type": t} for t in ("string", "integer", "number", "boolean"))
    return {
        "AnimaticJob": {
            "type": "object", "description": "An animatic MP4 being written from the board as it was when asked "
                                             "for; poll links.self for the progress.",
            "properties": {
                "id": string, "state": {"type": "string", "enum": ["running", "done", "failed", "canceled"]},
                "error": _nullable(string), "frames_done": {"type": "integer"}, "frames_total": {"type": "integer"},
                "resolution": {"type": "string", "enum": list(RESOLUTIONS)}, "push_in": {"type": "boolean"},
                "burn_in": {"type": "boolean"},
                "links": {"type": "object", "properties": {
                    "self": string, "cancel": {**string, "description": "POST: stop it between two frames."},
                    "download": {**string, "description": "The MP4, once state is done."}}}}},
        "Error": {
            "type": "object", "required": ["error", "field"],
            "properties": {"error": {**string, "description": "What went wrong, in words."},
                           "field": {**_nullable(string), "description": "The request field at fault, or null."}},
        },
        "NewStoryboard": {
            "type": "object", "description": "Needs `story`, or `panels` (an edited plan).",
            "properties": {
                "story": {**string, "description": "One line per panel, or a premise and a panel count."},
                "panels": {"type": "array", "maxItems": MAX_FRAMES, "description": "An edited plan (see "
                           "POST /api/plans), drawn instead of splitting the story.",
                           "items": {"type": "object", "required": ["caption"], "properties": {
                               "caption": string, "scene": {**string, "description": "English; blank = caption."},
                               "shot": string,
                               "dialogue": {**string, "description": "The line spoken over it; blank = none."},
                               "cast": {**_nullable(CAST), "description": "Who is in the panel (names from "
                                        "`characters`, [] for no one); missing or null: the names its caption and "
                                        "scene mention, else the first character."},
                               "layout": _nullable(_ref("NewLayout"))}}},
                "characters": {
                    "type": "array", "minItems": 1, "maxItems": MAX_CHARACTERS,
                    "description": "The cast, instead of `character`: the first is the lead (shown in panels "
                                   "that name nobody). Names are needed by a cast of several and unique.",
                    "items": {"type": "object", "required": ["traits"], "properties": {
                        "name": {**string, "maxLength": MAX_NAME_CHARS},
                        "traits": {**string, "description": "Face first, then clothing."},
                        "reference_image": {**string, "description": "This character's face as base64 or a data "
                                                                     "URL (PNG, JPEG or WebP); none: a portrait "
                                                                     "is drawn from the traits."}}}},
                "character": {**string, "description": "One unnamed character, face first (instead of "
                                                       "`characters`). Default: the server's."},
                "frames": {"type": "integer", "minimum": 1, "maximum": MAX_FRAMES,
                           "description": "Panel count; ignored when the story has one line per panel."},
                "preset": {"enum": list(PRESETS), "description": "Speed mode (see GET /api/presets)."},
                "aspect": {"enum": list(ASPECTS)},
                "style": string,
                "seed": {**_nullable({"type": "integer", "minimum": 0, "maximum": MAX_SEED}),
                         "description": "Empty or null: random."},
                "identity_lock": boolean,
                "consistent_look": {**boolean, "description": "With the identity lock: panels share their characters' "
                                                              "clothes and hair (self-attention to each character's "
                                                              "reference picture). Default: the server's."},
                "reference_image": {**string, "description": "JSON only: the face of `character` as base64 or "
                                                             "a data URL (PNG, JPEG or WebP)."},
            },
        },
        "NewStoryboardForm": {
            "type": "object", "description": "Needs `story`, or `panels` (an edited plan, as JSON text).",
            "properties": {
                **{key: {"type": "string"} for key in
                   ("story", "panels", "character", "frames", "preset", "aspect", "style", "seed", "identity_lock",
                    "consistent_look")},
                "characters": {"type": "string", "description": "The cast as JSON text: a list of "
                                                                '{"name", "traits"}; faces as reference_1...'},
                "reference": {"type": "string", "contentMediaType": "application/octet-stream",
                              "description": "The face file of `character` (PNG, JPEG or WebP)."},
                **{f"layout_{i}": {"type": "string", "contentMediaType": "application/octet-stream",
                                   "description": f"The sketch file of panel {i} (0-based) of `panels`, whose "
                                                  'layout is {"kind": "sketch"} without an image.'}
                   for i in range(MAX_FRAMES)},
                **{f"reference_{k}": {"type": "string", "contentMediaType": "application/octet-stream",
                                      "description": f"The face file of character {k} of `characters`."}
                   for k in range(1, MAX_CHARACTERS + 1)},
            },
        },
        "Settings": {
            "type": "object", "description": "What the board is drawn with.",
            "properties": {
                "preset": string, "steps": integer, "guidance_scale": number,
                "ip_adapter_scale": {**number, "description": "Used only while identity_lock is true."},
                "aspect": string, "width": integer, "height": integer, "seed": integer,
                "identity_lock": boolean, "consistent_look": boolean, "negative_prompt": string, "model": string,
            },
        },
        "Identity": {
            "type": "object",
            "properties": {
                "status": {"enum": ["match", "drift", "no_face", "no_reference_face"],
                           "description": "drift: a character's face drifted; match: none drifted and one matched; "
                                          "no_face: no face found; no_reference_face: no reference shows one."},
                "distance": {**_nullable(number), "description": "dlib face distance, the largest of the characters "
                                                                 "found; lower is the same person."},
                "threshold": number,
                "clip_similarity": {**_nullable(number), "description": "The least similar character's."},
                "faces": {**integer, "description": "Faces found in the panel (absent on older boards)."},
                "characters": {"type": "array", "description": "Per character in the panel, in cast order: the "
                               "face an optimal assignment gave it (absent on older boards).",
                               "items": {"type": "object", "properties": {
                                   "name": string,
                                   "status": {"enum": ["match", "drift", "missing", "no_reference_face"]},
                                   "distance": _nullable(number),
                                   "face": {**_nullable(integer),
                                            "description": "Which face, left to right (0-based)."},
                                   "clip_similarity": _nullable(number)}}},
            },
        },
        "Frame": {
            "type": "object",
            "properties": {
                "id": {**integer, "description": "Stable id (image URLs use it)."},
                "index": {**integer, "description": "1-based position in display order."},
                "status": {"enum": FRAME_STATUSES},
                "caption": string,
                "dialogue": {**string, "description": "The line spoken over the panel, shown under the caption "
                                                      "(\"\": none)."},
                "duration": {**number, "description": "Seconds on screen, in whole frames of the board's `fps`: "
                                                      "the one set, or the time to read the caption and dialogue."},
                "duration_set": {**boolean, "description": "Whether `duration` was set (false: the reading-time "
                                                           "default, which follows the words)."},
                "start": {**number, "description": "Seconds from the board's start, in its order."},
                "scene": {**string, "description": "What the prompt describes: the caption, or the English "
                                                   "scene of an edited plan."},
                "shot": string,
                "prompt": _nullable(string), "negative_prompt": _nullable(string),
                "cast": CAST,
                "prompt_shortened": {**_nullable(string),
                                     "description": "Scene words left out to fit CLIP's 77 tokens."},
                "traits_shortened": {**_nullable({"type": "object", "additionalProperties": string}),
                                     "description": "Per character (by name), the trait phrases left out to fit "
                                                    "CLIP's 77 tokens; only when several characters did not fit."},
                "seed": integer,
                "image_url": {**_nullable(string), "description": "The chosen take's image."},
                "take": {**_nullable(integer), "description": "The chosen take's id (null: nothing drawn yet)."},
                "takes": {"type": "array", "items": _ref("Take"),
                          "description": "Every image kept for the panel, oldest first: each redraw or refine adds "
                                         "one; STORYBOARD_TAKES_PER_PANEL bounds them (the oldest go)."},
                "identity": _nullable(_ref("Identity")),
                "consistent_look": {**_nullable({"type": "object", "properties": {
                    "characters": {"type": "array", "items": integer},
                    "sampling_rate": number}}),
                    "description": "The chosen take drawn with the consistent look: the characters (1-based) "
                                   "whose reference pictures it shared, at which sampling rate; null: without."},
                "attempts": _nullable(integer),
                "error": _nullable(string),
                "seconds": _nullable(number),
                "layout": {**_nullable(_ref("Layout")), "description": "The layout the panel follows when drawn."},
                "links": {"type": "object", "description": "Where to act on the panel; read them, never build them.",
                          "properties": {"self": {**string, "description": "PATCH: its duration, dialogue or layout."},
                                         "regenerate": {**string, "description": "POST: redraw it (by its "
                                                        "position when sent: a reorder moves it)."},
                                         "take": {**string, "description": "PUT {\"take\": id}: show that take."},
                                         "refine": {**string, "description": "POST: refine the chosen take."}}},
            },
        },
        "Take": {
            "type": "object", "description": "One image drawn for a panel, with what made it.",
            "properties": {
                "id": {**integer, "description": "1, 2, ... within the panel."},
                "parent": {**_nullable(integer), "description": "The take it was refined from; null: drawn afresh."},
                "seed": integer,
                "mode": {**_nullable(string), "description": "The speed preset's name."},
                "settings": {**_nullable({"type": "object"}),
                             "description": "What ran: scheduler, sampler, steps, guidance_scale, ip_adapter_scale, "
                                            "lora; a refine's also strength and denoising_steps (strength x steps, what it cost); "
                                            "drawn with the consistent look, look_references (the characters, "
                                            "1-based, whose reference pictures it shared) and look_sampling_rate. "
                                            "Null for a panel drawn before takes (its PNG keeps them)."},
                "identity": _nullable(_ref("Identity")),
                "seconds": _nullable(number),
                "created_at": {**string, "format": "date-time"},
                "image_url": string,
                "layout": {**_nullable(_ref("Layout")), "description": "The layout it was drawn with (a refine "
                                                                       "keeps its parent's composition: none)."},
                "links": {"type": "object", "properties": {
                    "delete": {**string, "description": "DELETE: remove the take (not the chosen one)."}}},
            },
        },
        **LAYOUT_SCHEMAS,
        "Progress": {
            "type": "object", "description": "The running job: only forward, over the whole job.",
            "properties": {
                "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                "panel": {**integer, "description": "The panel's position on the board; 0 = the character reference."},
                "of": {**integer, "description": "Panels on the board."},
                "label": {**string, "examples": ["Panel 2 of 3", "Character reference",
                                                 "Character reference: Mara"]},
                "step": integer, "steps": integer,
                "eta_s": {**number, "description": "Seconds left, from the pace so far."},
            },
        },
        "Storyboard": {
            "type": "object",
            "properties": {
                "id": string, "title": string, "status": {"enum": STATUSES},
                "error": {**_nullable(string), "description": "Why the board failed, in full."},
                "created_at": {**string, "format": "date-time"},
                "story": string,
                "characters": {"type": "array", "description": "The cast, in order (the first is the lead).",
                               "items": {"type": "object", "properties": {
                                   "name": {**string, "description": "\"\" for the one character of a board made "
                                                                     "with `character`."},
                                   "traits": string, "reference": _ref("Reference")}}},
                "character": {**string, "description": "The first character's traits."},
                "style": string,
                "settings": _ref("Settings"),
                "mode": {**string, "description": "The speed mode's label, as the page names it (\"Quality\")."},
                "reference": {**_ref("Reference"), "description": "The first character's reference."},
                "progress": _nullable(_ref("Progress")),
                "fps": {"enum": list(FRAME_RATES), "description": f"Its frame rate (default {DEFAULT_FPS:g}); "
                                                                  "durations are whole frames of it."},
                "duration": {**number, "description": "Seconds of the whole board played in order."},
                "frames": {"type": "array", "items": _ref("Frame")},
                "export": {"type": "object", "properties": {
                    "pdf": string, "zip": string,
                    "animatic": {**string, "description": "POST: start writing the animatic MP4 (an AnimaticJob)."},
                    "vtt": string, "srt": string, "otio": string, "fcp_xml": string, "edl": string,
                    "timeline_zip": string, "storyboarder": string}},
                "pdf_notice": {**_nullable(string), "description": "Text of the board that no font on the "
                               "studio's machine can draw: the PDF leaves it out and says so; null: none."},
                "links": {"type": "object", "description": "Every URL of the board, so a client reads them "
                                                           "instead of building them.",
                          "properties": {"self": {**string, "description": "GET it, PATCH its fps, DELETE it."},
                                         "events": {**string, "description": "Its Server-Sent Events."},
                                         "cancel": {**string, "description": "POST: cancel its job."},
                                         "resume": {**string, "description": "POST: draw what is left."},
                                         "order": {**string, "description": "PUT: a new panel order."},
                                         "refine": {**string, "description": "POST: refine every drawn panel."}}},
                "notices": {"type": "array", "items": string,
                            "description": "Things to know about the input (e.g. a story not in English); "
                                           "absent on older boards."},
            },
        },
        "Reference": {
            "type": "object", "description": "A character's reference face; kind null: none yet.",
            "properties": {"kind": {"enum": ["uploaded", "generated", None]}, "image_url": _nullable(string)}},
        "StoryboardSummary": {
            "type": "object",
            "properties": {
                "id": string, "title": string, "status": {"enum": STATUSES},
                "created_at": {**string, "format": "date-time"},
                "frames_total": integer, "frames_done": integer, "thumbnail_url": _nullable(string),
                "mode": {**string, "description": "The speed mode's label (e.g. Fast)."},
                "links": {"type": "object", "properties": {"self": {**string, "description": "The board: GET, "
                                                                                             "DELETE."}}},
            },
        },
        "Accepted": {
            "type": "object", "properties": {"id": string, "status": {"enum": STATUSES}},
        },
        "WarmUp": {
            **_nullable({"type": "object", "properties": {
                "done": integer, "of": integer,
                "eta_s": {**_nullable(integer), "description": "Seconds left at the pace so far; "
                          "null until the first graph is done."}}}),
            "description": "While a compiled model warms up (between boards, which are drawn meanwhile "
                           "without compile): graphs compiled so far, of all; else null.",
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"enum": ["ok", "failing", "worker_stopped"],
                           "description": "failing: the worker is alive but cannot save (see problem)."},
                "problem": {**_nullable(string), "description": "Why the worker cannot go on (e.g. a full "
                                                                "disk); boards wait until it is solved."},
                "model": {"enum": ["not_loaded", "loading", "warming_up", "ready", "error"],
                          "description": "warming_up: a compiled UNet compiles its graphs (see warm_up)."},
                "warm_up": _ref("WarmUp"),
                "error": {**_nullable(string), "description": "Why the model could not be loaded."},
                "device": _nullable(string),
                "queue": {**integer, "description": "Jobs waiting."},
                "backend": {**string, "description": "embedded, or redis (URL without password)."},
                "workers": {"type": "array", "description": "Redis backend: one entry per live worker process.",
                            "items": {"type": "object", "properties": {
                                "name": string, "host": string, "device": string,
                                "model": {"enum": ["not_loaded", "loading", "warming_up", "ready", "error"]},
                                "error": _nullable(string), "board": _nullable(string),
                                "warm_up": _ref("WarmUp"),
                                "last_heartbeat": {**number, "description": "Unix time."}}}},
                "loading_message": {**string, "description": "What loading the model involves (download or not)."},
                "demo": {"type": "boolean", "description": "The tiny random models are loaded (make demo): "
                                                          "panels are noise by design."},
            },
        },
        "Screenplay": {
            "type": "object", "description": "A Fountain script's scenes, each an editable plan: draw one with "
                                             "POST /api/storyboards (its `story`, `characters` with traits, `panels`).",
            "properties": {
                "title": {**string, "description": "The title page's Title, else the first scene heading."},
                "scenes": {"type": "array", "items": {"allOf": [_ref("Plan"), {"type": "object", "properties": {
                    "number": {**integer, "description": "1-based, in script order."},
                    "heading": {**string, "description": "As written (\"\" for text before the first heading)."},
                    "setting": {**string, "description": "INT./EXT. in words (\"interior\"); \"\" when none."},
                    "location": string, "time": {**string, "description": "The time of day; \"\" when none."},
                    "story": {**string, "description": "The board's story (its first line is the title)."},
                    "characters": {"type": "array", "description": "Who speaks, in order (most speakers kept); a "
                                   "name of the sent cast keeps its spelling and traits, a new one has none.",
                                   "items": {"type": "object", "properties": {"name": string, "traits": string}}},
                }}]}},
            },
        },
        "PlanRequest": {
            "type": "object", "required": ["premise"],
            "properties": {
                "premise": string,
                "frames": {**integer, "minimum": 1, "maximum": MAX_FRAMES},
                "characters": {"type": "array", "maxItems": MAX_CHARACTERS,
                               "description": "The board's cast: a plan for more characters than a board takes "
                                              "is refused.",
                               "items": {"type": "object", "required": ["name"],
                                         "properties": {"name": {**string, "maxLength": MAX_NAME_CHARS},
                                                        "traits": string}}},
            },
        },
        "Plan": {
            "type": "object",
            "properties": {
                "source": {"enum": ["built-in", "llm", "fallback", "screenplay"],
                           "description": "fallback: the LLM's plan was not used; the first notice says why. "
                                          "screenplay: a scene of POST /api/screenplays."},
                "notices": {"type": "array", "items": string},
                "panels": {"type": "array", "items": {"type": "object", "properties": {
                    "caption": {**string, "description": "In the user's language."},
                    "scene": {**string, "description": "In English, for the text encoders."},
                    "shot": string, "dialogue": {**string, "description": "The line spoken over it (\"\": none)."},
                    "cast": {**_nullable({"type": "array", "items": string}),
                                              "description": "null when planned without characters."}}}},
            },
        },
        "Planner": {
            "type": "object",
            "properties": {"llm": boolean, "model": _nullable(string),
                           "server": {**_nullable(string), "description": "Scheme, host and port; never the key."}},
        },
        "Preset": {
            "type": "object",
            "properties": {
                "name": {"enum": list(PRESETS)}, "label": string, "steps": integer,
                "guidance_scale": number, "ip_adapter_scale": number,
                "family": {**_nullable(string), "description": "The distilled LoRA family a few-step mode runs "
                                                               "with (STORYBOARD_LIGHTNING_FAMILY); null: SDXL alone."},
                "decoder": {"enum": list(DECODERS), "description": "What decodes its latents: SDXL's VAE, "
                                                                   "or TAESDXL (the draft mode)."},
                "unet_passes": {**integer, "description": "UNet passes a panel: steps, twice with CFG."},
                "description": {**string, "description": "What the mode costs, in words (optional)."},
                "tflops_per_panel": {**number, "description": "A panel's FLOPs at 1024x1024 with the identity "
                                                              "lock on, counted on the full-size models."},
                "seconds_per_panel": {**_nullable(number), "description": "A panel's time on this machine, "
                                      "estimated from the measured UNet pass; null until a board was drawn."},
                "look_passes": {**integer, "description": "UNet passes the consistent look adds to each "
                                "pipeline call per character its panels show (a reference row at every "
                                "step); 0: the mode draws without it."},
            },
        },
        "Presets": {
            "type": "object",
            "properties": {
                "presets": {"type": "array", "items": _ref("Preset")},
                "step_time": {**_nullable({"type": "object", "properties": {
                    "seconds_per_pass": number, "measured_at": number, "panels_per_call": {
                        **integer, "description": "Panels in the measured board's largest pipeline call: "
                                                  "1 drawn one by one, more batched."}}}),
                    "description": "A UNet pass as last measured on this machine (kept across restarts); "
                                   "null until a board was drawn."},
                "default_preset": string,
                "aspects": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"enum": list(ASPECTS)}, "width": integer, "height": integer}}},
                "default_aspect": string,
                "defaults": {"type": "object", "properties": {
                    "character": string, "style": string, "frames": integer, "identity_lock": boolean,
                                 "consistent_look": boolean}},
                "max_frames": integer,
                "shots": {"type": "array", "items": string, "description": "The shot types a plan's panel may name."},
                "max_characters": {**integer, "description": "Most characters in a cast."},
                "frame_rates": {"type": "array", "items": number, "description": "What a board's `fps` may be."},
                "refine": {"type": "object", "description": "What a refine (POST a panel's or a board's "
                                                            "`links.refine`) may ask for, and what it gets when "
                                                            "its body says nothing.", "properties": {
                    "presets": {"type": "array", "items": {"enum": list(REFINE_PRESETS)}},
                    "default_preset": {"enum": list(REFINE_PRESETS)},
                    "strength": {**number, "description": "STORYBOARD_REFINE_STRENGTH."}}},
            },
        },
    }


def _paths() -> dict:
    board = _json(_ref("Storyboard"), "The storyboard.")
    png = {"description": "The PNG (with its generation parameters in text chunks).",
           "content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}}
    return {
        "/": {"get": {"summary": "The studio's page", "operationId": "page",
                      "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
        "/api/health": {"get": {
            "summary": "Is the studio up, and is the model loaded?", "operationId": "health",
            "responses": {"200": _json(_ref("Health"), "The studio's state.")}}},
        "/api/presets": {"get": {
            "summary": "Speed modes, aspect ratios (with the sizes this server draws) and form defaults",
            "operationId": "presets", "responses": {"200": _json(_ref("Presets"), "The choices.")}}},
        "/api/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")}}},
        "/api/plans": {"post": {
            "summary": "A plan to edit before drawing (nothing is drawn or stored)", "operationId": "createPlan",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("PlanRequest")}}},
            "responses": {"200": _json(_ref("Plan"), "The plan."), **_errors(400, 403, 429)}}},
        "/api/screenplays": {"post": {
            "summary": "A Fountain screenplay's scenes as plans to edit (nothing is drawn or stored)",
            "description": "One panel per action beat (neighbours joined past the panel limit), its dialogue "
                           "under it; CHARACTER cues are the cast; INT./EXT. and time of day go into each "
                           "panel's scene. A text that is not a screenplay, binary, not UTF-8 or longer than "
                           "STORYBOARD_MAX_SCREENPLAY_CHARS is a 400 naming `text` or `file`.",
            "operationId": "readScreenplay",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["text"], "properties": {
                    "text": {"type": "string", "description": "The screenplay, in Fountain."},
                    "characters": {"type": "array", "description": "The cast so far: a cue of one of these names "
                                                                   "keeps its traits.",
                                   "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                                              "traits": {"type": "string"}}}}}}},
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary", "description": "A .fountain file (UTF-8)."},
                    "text": {"type": "string"},
                    "characters": {"type": "string", "description": "The cast so far, as JSON."}}}}}},
            "responses": {"200": _json(_ref("Screenplay"), "The scenes."), **_errors(400, 403, 413)}}},
        "/api/planner": {"get": {
            "summary": "Whether an LLM plans stories, and which", "operationId": "planner",
            "responses": {"200": _json(_ref("Planner"), "The planner.")}}},
        "/api/storyboards": {
            "get": {"summary": "History, newest first", "operationId": "listStoryboards",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "storyboards": {"type": "array", "items": _ref("StoryboardSummary")}}}, "The boards.")}},
            "post": {
                "summary": "A new storyboard (queued; drawn by the worker)", "operationId": "createStoryboard",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("NewStoryboard")},
                    "multipart/form-data": {"schema": _ref("NewStoryboardForm")}}},
                "responses": {"202": _json(_ref("Storyboard"), "Accepted: the new board."),
                              **_errors(400, 403, 413, 429, 503, 507)}},
        },
        "/api/storyboards/{board_id}": {
            "parameters": [BOARD_ID],
            "get": {"summary": "A storyboard, with the running job's progress", "operationId": "getStoryboard",
                    "responses": {"200": board, **_errors(404)}},
            "patch": {
                "summary": "Change how the board plays: its frame rate (nothing is drawn)",
                "operationId": "editStoryboard",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["fps"], "properties": {"fps": {
                        "enum": list(FRAME_RATES), "description": "Frames a second; every duration snaps to them."}}}}}},
                "responses": {"200": board, **_errors(400, 403, 404)}},
            "delete": {"summary": "Delete the board and its files", "operationId": "deleteStoryboard",
                       "responses": {"204": {"description": "Deleted."}, **_errors(403, 404)}},
        },
        "/api/storyboards/{board_id}/events": {
            "parameters": [BOARD_ID],
            "get": {
                "summary": "Server-Sent Events: progress, preview, frame, reference, status",
                "description": "Every event has an id; a reconnecting client sends Last-Event-ID (or the "
                               "`last_event_id` query parameter) and gets only what it missed. The stream "
                               "ends after the final status. A `reference` event is a generated portrait: "
                               "`character` (1-based), `name`, `kind`, `image_url`. A `preview` event is a "
                               "panel forming (`frame_id`, `panel`, `step`, `steps`, `image`: a data URL of a "
                               "small JPEG), never stored: a client that reads late gets only each panel's newest.",
                "operationId": "storyboardEvents",
                "parameters": [{"name": "last_event_id", "in": "query", "required": False,
                                "schema": {"type": "string"}},
                               {"name": "Last-Event-ID", "in": "header", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The event stream.",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              **_errors(404)}},
        },
        "/api/storyboards/{board_id}/cancel": {
            "parameters": [BOARD_ID],
            "post": {"summary": "Stop at the next step (finished panels are kept)", "operationId": "cancelStoryboard",
                     "responses": {"202": _json(_ref("Accepted"), "Canceling."), **_errors(403, 404, 409)}},
        },
        "/api/storyboards/{board_id}/resume": {
            "parameters": [BOARD_ID],
            "post": {"summary": "Draw the panels not yet done (after a cancel, a failure or a restart)",
                     "operationId": "resumeStoryboard",
                     "responses": {"202": _json(_ref("Accepted"), "Queued."), **_errors(403, 404, 409)}},
        },
        "/api/storyboards/{board_id}/frames/{n}/regenerate": {
            "parameters": [BOARD_ID, POSITION],
            "post": {
                "summary": "Redraw the panel at position n", "operationId": "regenerateFrame",
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "seed": {**_nullable({"type": "integer", "minimum": 0}),
                                 "description": "Missing or null: a new random seed."},
                        "caption": {"type": "string", "description": "Edited panel text."},
                        "scene": {"type": "string", "description": "Edited English scene for the prompt."},
                        "cast": {**CAST, "description": "Who is in the panel ([] for no one); missing: the "
                                                        "panel keeps its cast."},
                        "layout": {**_nullable(_ref("NewLayout")), "description": "Missing: the panel keeps its "
                                   "layout (a pose must still place its cast); null: drawn without one."}}}}}},
                "responses": {"202": board, **_errors(400, 403, 404, 409, 429)}},
        },
        "/api/storyboards/{board_id}/frames/{frame_id}": {
            "parameters": [BOARD_ID, FRAME_ID],
            "patch": {
                "summary": "Change a panel's duration, dialogue or layout (instant: nothing is drawn)",
                "operationId": "editFrame",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "minProperties": 1, "properties": {
                        "duration": {**_nullable({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS}),
                                     "description": "Seconds (snapped to the board's frames); null: the time to "
                                                    "read its caption and dialogue."},
                        "dialogue": {"type": "string", "description": "The line spoken over it; \"\": none."},
                        "layout": {**_nullable(_ref("NewLayout")), "description": "Its layout for its next drawing "
                                   "(null: none); the takes keep the one they were drawn with."}}}}}},
                "responses": {"200": board, **_errors(400, 403, 404, 409)}},
        },
        "/api/storyboards/{board_id}/frames/{frame_id}/take": {
            "parameters": [BOARD_ID, FRAME_ID],
            "put": {
                "summary": "Show another of the panel's takes (instant: nothing is drawn; it undoes a redraw)",
                "operationId": "chooseTake",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["take"], "properties": {"take": {
                        "type": "integer", "minimum": 1, "description": "A take's `id`."}}}}}},
                "responses": {"200": board, **_errors(400, 403, 404)}},
        },
        "/api/storyboards/{board_id}/frames/{frame_id}/refine": {
            "parameters": [BOARD_ID, FRAME_ID],
            "post": {"summary": "Refine the panel's chosen take into a new take that keeps its composition",
                     "operationId": "refineFrame", "requestBody": REFINE_BODY,
                     "responses": {"202": board, **_errors(400, 403, 404, 409, 429, 503)}},
        },
        "/api/storyboards/{board_id}/refine": {
            "parameters": [BOARD_ID],
            "post": {"summary": "Refine the chosen take of every drawn panel", "operationId": "refineStoryboard",
                     "requestBody": REFINE_BODY, "responses": {"202": board, **_errors(400, 403, 404, 409, 429, 503)}},
        },
        "/api/storyboards/{board_id}/frames/{frame_id}/takes/{take_id}": {
            "parameters": [BOARD_ID, FRAME_ID, TAKE_ID],
            "delete": {"summary": "Remove a take and its image (409 for the chosen one)", "operationId": "deleteTake",
                       "responses": {"204": {"description": "Removed."}, **_errors(403, 404, 409)}},
        },
        "/api/storyboards/{board_id}/frames/{frame_id}/takes/{take_id}/image.png": {
            "parameters": [BOARD_ID, FRAME_ID, TAKE_ID],
            "get": {"summary": "A take's image", "operationId": "takeImage",
                    "responses": {"200": png, **_errors(404)}},
        },
        "/api/storyboards/{board_id}/frames/{frame_id}/layout.png": {
            "parameters": [BOARD_ID, FRAME_ID],
            "get": {"summary": "The panel's layout picture: its sketch (white lines on black) or its pose drawn as "
                               "the OpenPose colour map", "operationId": "frameLayoutImage",
                    "responses": {"200": png, **_errors(404)}},
        },
        "/api/storyboards/{board_id}/frames/{frame_id}/takes/{take_id}/layout.png": {
            "parameters": [BOARD_ID, FRAME_ID, TAKE_ID],
            "get": {"summary": "The layout picture a take was drawn with", "operationId": "takeLayoutImage",
                    "responses": {"200": png, **_errors(404)}},
        },
        "/api/storyboards/{board_id}/order": {
            "parameters": [BOARD_ID],
            "put": {
                "summary": "Reorder the panels", "operationId": "reorderFrames",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["order"], "properties": {"order": {
                        "type": "array", "items": {"type": "integer"},
                        "description": "Every frame id exactly once, in the new order."}}}}}},
                "responses": {"200": board, **_errors(400, 403, 404)}},
        },
        "/api/storyboards/{board_id}/frames/{frame_id}/image.png": {
            "parameters": [BOARD_ID, FRAME_ID],
            "get": {"summary": "A panel's image", "operationId": "frameImage",
                    "responses": {"200": png, **_errors(404)}},
        },
        "/api/storyboards/{board_id}/reference.png": {
            "parameters": [BOARD_ID],
            "get": {"summary": "The first character's reference (uploaded or generated)",
                    "operationId": "referenceImage", "responses": {"200": png, **_errors(404)}},
        },
        "/api/storyboards/{board_id}/references/{character}.png": {
            "parameters": [BOARD_ID, CHARACTER],
            "get": {"summary": "A character's reference (uploaded or generated)", "operationId": "characterReference",
                    "responses": {"200": png, **_errors(404)}},
        },
        "/api/storyboards/{board_id}/export.pdf": {
            "parameters": [BOARD_ID],
            "get": {"summary": "PDF export, in display order", "operationId": "exportPdf",
                    "responses": {"200": {"description": "A4 landscape pages, six numbered panels each, then "
                                                         "the cast: names, traits and reference faces.",
                                          "content": {"application/pdf": {}}}, **_errors(404, 429)}},
        },
        **_cut_paths(),
        "/api/storyboards/{board_id}/animatic": {
            "parameters": [BOARD_ID],
            "post": {"summary": "Start writing the animatic: an H.264 MP4 of the panels in time at the board's "
                                "aspect, captions as a mov_text subtitle track", "operationId": "startAnimatic",
                     "requestBody": {"required": False, "content": {"application/json": {"schema": {
                         "type": "object", "properties": {
                             "resolution": {"type": "string", "enum": list(RESOLUTIONS), "default": DEFAULT_RESOLUTION,
                                            "description": "The video's shorter side."},
                             "push_in": {"type": "boolean", "default": False,
                                         "description": "A slow push-in on every panel."},
                             "burn_in": {"type": "boolean", "default": False,
                                         "description": "The captions drawn into the picture too."}}}}}},
                     "responses": {"202": _json(_ref("AnimaticJob"), "Started."), **_errors(400, 404, 429)}},
        },
        "/api/storyboards/{board_id}/animatics/{job_id}": {
            "parameters": [BOARD_ID, JOB_ID],
            "get": {"summary": "An animatic's progress", "operationId": "animaticJob",
                    "responses": {"200": _json(_ref("AnimaticJob"), "The job now."), **_errors(404)}},
        },
        "/api/storyboards/{board_id}/animatics/{job_id}/cancel": {
            "parameters": [BOARD_ID, JOB_ID],
            "post": {"summary": "Cancel an animatic; its partial file is removed", "operationId": "cancelAnimatic",
                     "responses": {"202": _json(_ref("AnimaticJob"), "Canceling."), **_errors(404)}},
        },
        "/api/storyboards/{board_id}/animatics/{job_id}/animatic.mp4": {
            "parameters": [BOARD_ID, JOB_ID],
            "get": {"summary": "The finished animatic", "operationId": "animaticFile",
                    "responses": {"200": {"description": "H.264 (yuv420p) and a mov_text caption track.",
                                          "content": {"video/mp4": {}}}, **_errors(404, 409)}},
        },
        "/api/storyboards/import": {
            "post": {"summary": "A new board from a zipped Storyboarder project: its boards' action (else "
                                "dialogue, else notes) as the panels' captions, its aspect as the nearest "
                                "the studio draws; queued like a posted board", "operationId": "importStoryboarder",
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                         "type": "object", "required": ["project"],
                         "properties": {"project": {"type": "string", "contentMediaType": "application/zip",
                                                    "description": "The project's folder, zipped: one .storyboarder "
                                                                   "file and its images/."},
                                        "style": {"type": "string"}, "preset": {"type": "string"},
                                        "aspect": {"type": "string"}, "seed": {"type": "string"}}}}}},
                     "responses": {"202": board, **_errors(400, 413, 429, 503)}},
        },
        "/api/storyboards/{board_id}/export.zip": {
            "parameters": [BOARD_ID],
            "get": {"summary": "ZIP export: panel-01.png... in display order, reference-1.png... (one per "
                               "character with a reference), storyboard.json",
                    "operationId": "exportZip",
                    "responses": {"200": {"description": "The archive.", "content": {"application/zip": {}}},
                                  **_errors(404, 429)}},
        },
    }


def _cut_paths() -> dict:
    """The cut's downloads (cut.py, timeline_export.py, storyboarder.py)."""
    files = {
        "captions.vtt": ("exportVtt", "The captions as WebVTT, one cue per panel with text.", "text/vtt"),
        "captions.srt": ("exportSrt", "The captions as SubRip.", "application/x-subrip"),
        "timeline.otio": ("exportOtio", "OpenTimelineIO: one clip per panel (its PNG by file name, caption, "
                                        "prompt and seed in metadata, a marker).", "application/json"),
        "timeline.xml": ("exportFcpXml", "The timeline as Final Cut Pro 7 XML.", "application/xml"),
        "timeline.edl": ("exportEdl", "The timeline as a CMX 3600 EDL.", "text/plain"),
        "timeline.zip": ("exportTimelineZip", "storyboard.otio, .xml and .edl beside the panel-NN.png they "
                                              "name, to unzip and relink.", "application/zip"),
        "storyboarder.zip": ("exportStoryboarder", "A Storyboarder project folder: its .storyboarder file and "
                                                   "images/ (each panel on a reference layer).", "application/zip"),
    }
    return {f"/api/storyboards/{{board_id}}/{name}": {
        "parameters": [BOARD_ID],
        "get": {"summary": words.split(":")[0].rstrip("."), "operationId": operation,
                "responses": {"200": {"description": words, "content": {mimetype: {}}}, **_errors(404, 429)}},
    } for name, (operation, words, mimetype) in files.items()}


def openapi_document() -> dict:
    """The whole document, as a plain dict (the HTTP layer turns it into JSON)."""
    paths = _paths()
    for path, item in paths.items():
        for method, operation in item.items():
            if path.startswith("/api/") and method != "parameters":
                operation["responses"].update(_errors(500))  # any route, on a bug: words, not a traceback
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Storyboard Studio API",
            "version": "1",
            "description": "The JSON API the studio's page uses. Errors are "
                           '`{"error": "words", "field": "name or null"}`. POST, PUT and DELETE from '
                           "another site are refused (403).",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": {f"Error{code}": _json(_ref("Error"), words) for code, words in ERROR_WORDS.items()},
        },
    }
