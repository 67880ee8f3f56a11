/* A stick-figure editor: one OpenPose skeleton (the 18 COCO body keypoints) per character in
 * the panel, drawn in OpenPose's colour map on black, each labelled with its character's name.
 * Drag a joint to move it, drag the neck to move the whole figure; a starting pose replaces
 * the chosen figure's. Mouse, pen and touch arrive as Pointer Events (touch-action: none).
 *
 * Keypoints are kept in canvas pixels while editing and handed out as [x, y] fractions of the
 * width and height (null for a joint not seen, e.g. the far eye of a figure seen from the side).
 */

import { SKETCH_LONG_SIDE } from "./sketch.js";

export const JOINTS = ["nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
  "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear"];
const NECK = 1;

// OpenPose's body limbs (pairs of joints) and colours, as its reference renderer draws them.
const LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12], [12, 13],
  [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]];
const COLOURS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
  [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255], [170, 0, 255],
  [255, 0, 255], [255, 0, 170], [255, 0, 85]];

/* Starting poses, in body units: x from the figure's centre line, y from the top of its head,
 * 1 = its height. Facing the viewer, a figure's right side is on the picture's left. */
export const POSES = {
  standing: [[0, 0.07], [0, 0.17], [-0.1, 0.18], [-0.13, 0.33], [-0.14, 0.47], [0.1, 0.18], [0.13, 0.33],
    [0.14, 0.47], [-0.06, 0.5], [-0.07, 0.73], [-0.07, 0.95], [0.06, 0.5], [0.07, 0.73], [0.07, 0.95],
    [-0.025, 0.05], [0.025, 0.05], [-0.05, 0.06], [0.05, 0.06]],
  walking: [[0, 0.07], [0, 0.17], [-0.1, 0.18], [-0.14, 0.32], [-0.18, 0.44], [0.1, 0.18], [0.11, 0.33],
    [0.08, 0.46], [-0.06, 0.5], [-0.1, 0.72], [-0.15, 0.95], [0.06, 0.5], [0.08, 0.72], [0.13, 0.93],
    [-0.025, 0.05], [0.025, 0.05], [-0.05, 0.06], [0.05, 0.06]],
  sitting: [[0, 0.22], [0, 0.32], [-0.1, 0.33], [-0.13, 0.47], [-0.08, 0.58], [0.1, 0.33], [0.13, 0.47],
    [0.08, 0.58], [-0.07, 0.62], [-0.1, 0.68], [-0.1, 0.95], [0.07, 0.62], [0.1, 0.68], [0.1, 0.95],
    [-0.025, 0.2], [0.025, 0.2], [-0.05, 0.21], [0.05, 0.21]],
  pointing: [[0, 0.07], [0, 0.17], [-0.1, 0.18], [-0.22, 0.2], [-0.34, 0.19], [0.1, 0.18], [0.13, 0.33],
    [0.14, 0.47], [-0.06, 0.5], [-0.07, 0.73], [-0.07, 0.95], [0.06, 0.5], [0.07, 0.73], [0.07, 0.95],
    [-0.025, 0.05], [0.025, 0.05], [-0.05, 0.06], [0.05, 0.06]],
  // Turned to the picture's right: the figure's right side faces the viewer, its left eye and ear are hidden.
  side: [[0.07, 0.07], [0, 0.17], [0.01, 0.18], [0.03, 0.33], [0.07, 0.46], [-0.01, 0.18], [-0.01, 0.33],
    [0.02, 0.46], [0.01, 0.5], [0.04, 0.73], [0.01, 0.95], [-0.01, 0.5], [0, 0.73], [-0.02, 0.95],
    [0.05, 0.05], null, [-0.01, 0.06], null],
};
export const POSE_LABELS = { standing: "Standing", walking: "Walking", sitting: "Sitting", pointing: "Pointing",
  side: "Side view" };

const FIGURE_HEIGHT = 0.8; // of the panel's height, for a starting pose
const REACH_PX = 22; // how near (on screen) a pointer must come to a joint to take it

export class PoseEditor {
  /** ``onChange()`` is called after every change (the dialog's buttons follow what can be undone). */
  constructor(canvas, onChange = () => {}) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.onChange = onChange;
    this.figures = []; // [{character, label, keypoints: [[x, y] | null]}], keypoints in canvas pixels
    this.history = [];
    this.selected = 0;
    this.drag = null;
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.up(event));
    canvas.addEventListener("pointercancel", (event) => this.up(event));
  }

  /** One figure per ``characters`` entry ({name, label}), standing side by side, or as ``poses``
   * (a stored pose layout's) has them. */
  reset(width, height, characters, poses = []) {
    const scale = SKETCH_LONG_SIDE / Math.max(width, height);
    this.canvas.width = Math.round(width * scale);
    this.canvas.height = Math.round(height * scale);
    this.figures = characters.map((c, i) => {
      const stored = poses.find((pose) => pose.character === c.name);
      const keypoints = stored && Array.isArray(stored.keypoints) && stored.keypoints.length === JOINTS.length
        ? stored.keypoints.map((p) => (p ? [p[0] * this.canvas.width, p[1] * this.canvas.height] : null))
        : this.placed("standing", (i + 1) / (characters.length + 1));
      return { character: c.name, label: c.label, keypoints };
    });
    this.history = [];
    this.selected = 0;
    this.drag = null;
    this.render();
  }

  /** Starting pose ``name`` for a figure whose centre line is at ``centre`` (of the width). */
  placed(name, centre) {
    const h = FIGURE_HEIGHT * this.canvas.height;
    const top = ((1 - FIGURE_HEIGHT) / 2) * this.canvas.height;
    return POSES[name].map((p) => (p ? [centre * this.canvas.width + p[0] * h, top + p[1] * h] : null));
  }

  /** The chosen figure takes starting pose ``name`` where it stands (its neck stays put). */
  pose(name) {
    const figure = this.figures[this.selected];
    if (!figure) return;
    this.remember();
    const fresh = this.placed(name, 0.5);
    const dx = figure.keypoints[NECK][0] - fresh[NECK][0];
    const dy = figure.keypoints[NECK][1] - fresh[NECK][1];
    figure.keypoints = fresh.map((p) => (p ? [p[0] + dx, p[1] + dy] : null));
    this.changed();
  }

  /** The chosen figure grows (factor > 1) or shrinks about its neck: how big it is in frame. */
  resize(factor) {
    const figure = this.figures[this.selected];
    if (!figure) return;
    this.remember();
    const [nx, ny] = figure.keypoints[NECK];
    figure.keypoints = figure.keypoints.map((p) => (p ? this.inside([nx + (p[0] - nx) * factor,
      ny + (p[1] - ny) * factor]) : null));
    this.changed();
  }

  canUndo() {
    return this.history.length > 0;
  }

  undo() {
    const last = this.history.pop();
    if (!last) return;
    this.figures.forEach((figure, i) => { figure.keypoints = last[i]; });
    this.changed();
  }

  /** Every figure back to standing in its starting place (undo brings the pose back). */
  clear() {
    this.remember();
    this.figures.forEach((figure, i) => {
      figure.keypoints = this.placed("standing", (i + 1) / (this.figures.length + 1));
    });
    this.changed();
  }

  /** The layout's poses: keypoints as fractions of the width and height, in JOINTS order. */
  poses() {
    const round = (v) => Math.round(Math.min(Math.max(v, 0), 1) * 10000) / 10000;
    return this.figures.map((figure) => ({
      character: figure.character,
      keypoints: figure.keypoints.map((p) => (p ? [round(p[0] / this.canvas.width), round(p[1] / this.canvas.height)]
        : null)),
    }));
  }

  remember() {
    this.history.push(this.figures.map((figure) => figure.keypoints.map((p) => (p ? [...p] : null))));
  }

  changed() {
    this.render();
    this.onChange();
  }

  render() {
    const { context, canvas } = this;
    const unit = canvas.height / SKETCH_LONG_SIDE; // OpenPose draws 4-pixel limbs on a 512 picture
    context.fillStyle = "#000000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    this.figures.forEach((figure, f) => {
      const k = figure.keypoints;
      context.lineCap = "round";
      context.lineWidth = 8 * Math.max(unit, 0.5);
      context.globalAlpha = 0.6;
      LIMBS.forEach(([a, b], i) => {
        if (!k[a] || !k[b]) return;
        context.strokeStyle = `rgb(${COLOURS[i].join(",")})`;
        context.beginPath();
        context.moveTo(...k[a]);
        context.lineTo(...k[b]);
        context.stroke();
      });
      context.globalAlpha = 1;
      k.forEach((p, i) => {
        if (!p) return;
        context.fillStyle = `rgb(${COLOURS[i].join(",")})`;
        context.beginPath();
        context.arc(p[0], p[1], 5, 0, 2 * Math.PI);
        context.fill();
      });
      this.label(figure, f === this.selected);
    });
  }

  /** The character's name above the figure's head; the chosen figure's is underlined. */
  label(figure, chosen) {
    const { context } = this;
    const points = figure.keypoints.filter(Boolean);
    const x = points.reduce((sum, p) => sum + p[0], 0) / points.length;
    const top = Math.min(...points.map((p) => p[1]));
    context.font = "600 15px system-ui, sans-serif";
    context.textAlign = "center";
    context.textBaseline = "bottom";
    context.fillStyle = "#ffffff";
    const y = Math.max(top - 12, 18);
    context.fillText(figure.label, x, y);
    if (chosen) context.fillRect(x - context.measureText(figure.label).width / 2, y + 2,
      context.measureText(figure.label).width, 2);
  }

  point(event) {
    const rect = this.canvas.getBoundingClientRect();
    return {
      at: [((event.clientX - rect.left) / rect.width) * this.canvas.width,
        ((event.clientY - rect.top) / rect.height) * this.canvas.height],
      reach: (REACH_PX / rect.width) * this.canvas.width,
    };
  }

  inside([x, y]) {
    return [Math.min(Math.max(x, 0), this.canvas.width), Math.min(Math.max(y, 0), this.canvas.height)];
  }

  /** The joint nearest ``at`` within ``reach``: {figure, joint}, or null. */
  nearest(at, reach) {
    let best = null;
    this.figures.forEach((figure, f) => figure.keypoints.forEach((p, j) => {
      if (!p) return;
      const d = Math.hypot(p[0] - at[0], p[1] - at[1]);
      if (d <= reach && (!best || d < best.d)) best = { figure: f, joint: j, d };
    }));
    return best;
  }

  down(event) {
    if (this.drag || event.button !== 0) return;
    const { at, reach } = this.point(event);
    const hit = this.nearest(at, reach);
    if (!hit) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.remember();
    this.selected = hit.figure;
    this.drag = { pointerId: event.pointerId, figure: hit.figure, joint: hit.joint, from: at };
    this.render();
    this.onChange(); // the chosen figure may have changed
  }

  move(event) {
    if (!this.drag || event.pointerId !== this.drag.pointerId) return;
    const { at } = this.point(event);
    const figure = this.figures[this.drag.figure];
    if (this.drag.joint === NECK) { // the neck carries the whole figure, kept whole inside the panel
      const points = figure.keypoints.filter(Boolean);
      const xs = points.map((p) => p[0]);
      const ys = points.map((p) => p[1]);
      const dx = Math.min(Math.max(at[0] - this.drag.from[0], -Math.min(...xs)), this.canvas.width - Math.max(...xs));
      const dy = Math.min(Math.max(at[1] - this.drag.from[1], -Math.min(...ys)), this.canvas.height - Math.max(...ys));
      figure.keypoints = figure.keypoints.map((p) => (p ? [p[0] + dx, p[1] + dy] : null));
      this.drag.from = [this.drag.from[0] + dx, this.drag.from[1] + dy];
    } else {
      figure.keypoints[this.drag.joint] = this.inside(at);
    }
    this.drag.moved = true;
    this.render();
  }

  up(event) {
    if (!this.drag || event.pointerId !== this.drag.pointerId) return;
    if (!this.drag.moved) this.history.pop(); // a tap only chose the figure: nothing to undo
    this.drag = null;
    this.changed();
  }
}
