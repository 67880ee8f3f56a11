/* A thumbnail sketch on a canvas: dark lines on white, drawn with a pen or erased, with
 * undo and clear; an uploaded rough drawing may be its starting point. Mouse, pen and touch
 * all arrive as Pointer Events (the canvas has touch-action: none, so a finger draws rather
 * than scrolls).
 *
 * What is drawn is a list of steps (a stroke, a loaded drawing, a clear), replayed onto the
 * canvas: undo drops the last step, so even a clear can be taken back.
 */

const INK = "#111111";
const PAPER = "#ffffff";
const PEN_WIDTH = 3; // in canvas pixels, on a canvas 512 pixels on its long side
const ERASER_WIDTH = 24;

export const SKETCH_LONG_SIDE = 512;

export class SketchCanvas {
  /** ``onChange()`` is called after every step (the dialog's buttons follow what can be undone). */
  constructor(canvas, onChange = () => {}) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.onChange = onChange;
    this.steps = [];
    this.tool = "pen";
    this.stroke = null; // the stroke under the pointer, with that pointer's id
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.up(event));
    canvas.addEventListener("pointercancel", (event) => this.up(event));
  }

  /** Start afresh at ``width`` x ``height`` (the panel's aspect), from ``image`` if any. */
  reset(width, height, image = null) {
    const scale = SKETCH_LONG_SIDE / Math.max(width, height);
    this.canvas.width = Math.round(width * scale);
    this.canvas.height = Math.round(height * scale);
    this.steps = image ? [{ kind: "image", image: onPaper(image) }] : [];
    this.stroke = null;
    this.render();
  }

  /** Whether the paper is white all over (a blank sketch is no layout; erased lines are gone). */
  isBlank() {
    const { data } = this.context.getImageData(0, 0, this.canvas.width, this.canvas.height);
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] < 250 || data[i + 1] < 250 || data[i + 2] < 250) return false;
    }
    return true;
  }

  canUndo() {
    return this.steps.length > 0;
  }

  undo() {
    if (!this.steps.length) return;
    this.steps.pop();
    this.changed();
  }

  clear() {
    if (!this.steps.length || this.steps[this.steps.length - 1].kind === "clear") return;
    this.steps.push({ kind: "clear" });
    this.changed();
  }

  /** An uploaded drawing (an ImageBitmap or an <img>) becomes a step under what follows. */
  load(image) {
    this.steps.push({ kind: "image", image: onPaper(image) });
    this.changed();
  }

  /** The sketch as a PNG data URL: what the studio takes as a sketch layout. */
  toDataURL() {
    return this.canvas.toDataURL("image/png");
  }

  changed() {
    this.render();
    this.onChange();
  }

  render() {
    const { context, canvas } = this;
    context.fillStyle = PAPER;
    context.fillRect(0, 0, canvas.width, canvas.height);
    for (const step of this.steps) {
      if (step.kind === "clear") context.fillRect(0, 0, canvas.width, canvas.height);
      else if (step.kind === "image") this.drawImage(step.image);
      else this.drawStroke(step);
    }
  }

  /** A drawing fits the paper whole (letterboxed on white), never stretched. */
  drawImage(image) {
    const { context, canvas } = this;
    const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
    const w = image.width * scale;
    const h = image.height * scale;
    context.drawImage(image, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  }

  drawStroke(stroke) {
    const { context } = this;
    context.save();
    context.strokeStyle = stroke.tool === "eraser" ? PAPER : INK;
    context.fillStyle = context.strokeStyle;
    context.lineWidth = stroke.tool === "eraser" ? ERASER_WIDTH : PEN_WIDTH;
    context.lineCap = "round";
    context.lineJoin = "round";
    const [first, ...rest] = stroke.points;
    if (!rest.length) { // a tap leaves a dot
      context.beginPath();
      context.arc(first[0], first[1], context.lineWidth / 2, 0, 2 * Math.PI);
      context.fill();
    } else {
      context.beginPath();
      context.moveTo(first[0], first[1]);
      for (const [x, y] of rest) context.lineTo(x, y);
      context.stroke();
    }
    context.restore();
  }

  /** Where a pointer is, in canvas pixels (the canvas is shown at another size). */
  point(event) {
    const rect = this.canvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) / rect.width) * this.canvas.width,
      ((event.clientY - rect.top) / rect.height) * this.canvas.height,
    ];
  }

  down(event) {
    if (this.stroke || event.button !== 0) return; // one pointer draws at a time; a second finger is ignored
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.stroke = { kind: "stroke", tool: this.tool, points: [this.point(event)], pointerId: event.pointerId };
    this.steps.push(this.stroke);
    this.render();
  }

  move(event) {
    if (!this.stroke || event.pointerId !== this.stroke.pointerId) return;
    // A fast pen reports several positions per frame: all of them keep the line smooth.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) this.stroke.points.push(this.point(e));
    this.render();
  }

  up(event) {
    if (!this.stroke || event.pointerId !== this.stroke.pointerId) return;
    this.stroke = null;
    this.changed();
  }
}

/** A drawing as dark lines on light paper: the studio stores a sketch as the adapter takes it
 * (white lines on black), and a chalk drawing comes that way too; such a one is turned round. */
function onPaper(image) {
  const copy = document.createElement("canvas");
  copy.width = image.width;
  copy.height = image.height;
  const context = copy.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, copy.width, copy.height);
  const { data } = pixels;
  let light = 0;
  for (let i = 0; i < data.length; i += 4) light += data[i] + data[i + 1] + data[i + 2];
  if (light / (data.length / 4) / 3 >= 128) return copy;
  for (let i = 0; i < data.length; i += 4) {
    data[i] = 255 - data[i];
    data[i + 1] = 255 - data[i + 1];
    data[i + 2] = 255 - data[i + 2];
  }
  context.putImageData(pixels, 0, 0);
  return copy;
}
