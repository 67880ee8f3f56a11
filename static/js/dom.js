/* Building the page: every piece of user or server text goes in through textContent or
 * element attributes, never through innerHTML.
 */

export const $ = (id) => document.getElementById(id);

export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
  if (options.attrs) {
    for (const [name, value] of Object.entries(options.attrs)) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
    }
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** Only same-origin paths, http(s) and image data URLs may become src/href. */
export function safeUrl(url) {
  if (typeof url !== "string" || !url) return null;
  if (url.startsWith("/") && !url.startsWith("//")) return url;
  if (/^https?:\/\//i.test(url)) return url;
  if (/^data:image\/(png|jpeg|webp|gif);/i.test(url)) return url;
  return null;
}

/** Screen-reader-only notice for small confirmations (the visible status line stays as is). */
export function announce(message) {
  $("announcer").textContent = message;
}

export function actionButton(className, label, ariaLabel, onClick, disabled = false) {
  const button = el("button", {
    className: `button small ${className}`,
    text: label,
    attrs: { type: "button", "aria-label": ariaLabel, title: ariaLabel },
  });
  button.disabled = disabled;
  button.addEventListener("click", onClick);
  return button;
}
