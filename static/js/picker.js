/* Who is in a panel: checkboxes for a plan row and for a panel's Edit.
 */

import { el } from "./dom.js";

/** Checkboxes for who is in a panel: one per character, and "no one". ``selected``: the
 * chosen values, [] for no one, or null for none chosen (a plan row: whoever its text
 * names). "No one" and the names exclude each other; unticking the last name ticks "no one".
 * Every checkbox carries the group's id as data-field: an error about the group is settled
 * by ticking any of them. */
export function castPicker(id, options, selected, onChange) {
  const box = el("fieldset", { className: "cast-picker", attrs: { id } });
  box.append(el("legend", { className: "small-label", text: "Who is in it" }));
  const choice = (suffix, label, checked) => {
    const input = el("input", { attrs: { type: "checkbox", id: `${id}-${suffix}`, "data-field": id } });
    input.checked = checked;
    box.append(el("label", { className: "cast-choice", attrs: { for: input.id } }, [input, document.createTextNode(label)]));
    return input;
  };
  const chosen = new Set(selected || []);
  const names = options.map((option, j) => ({ value: option.value, input: choice(String(j), option.label, chosen.has(option.value)) }));
  const nobody = choice("none", "no one", Array.isArray(selected) && selected.length === 0);
  nobody.classList.add("cast-nobody");
  const hint = el("span", { className: "hint cast-picker-hint", text: "none ticked: whoever its text names" });
  box.append(hint);
  const value = () => {
    if (nobody.checked) return [];
    const ticked = names.filter((n) => n.input.checked).map((n) => n.value);
    return ticked.length ? ticked : null;
  };
  const sync = () => { hint.hidden = value() !== null; };
  for (const n of names) {
    n.input.addEventListener("change", () => {
      if (n.input.checked) nobody.checked = false;
      else if (!names.some((other) => other.input.checked)) nobody.checked = true;
      sync();
      onChange(value());
    });
  }
  nobody.addEventListener("change", () => {
    if (nobody.checked) for (const n of names) n.input.checked = false;
    else if (!names.some((n) => n.input.checked)) nobody.checked = true; // choose someone instead
    sync();
    onChange(value());
  });
  sync();
  return box;
}

/** The same cast, whatever the case and order of its names. */
export function sameCast(a, b) {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
  const fold = (names) => names.map((n) => String(n).toLowerCase()).sort().join("\n");
  return fold(a) === fold(b);
}
