// Building the page from data without ever parsing data as HTML: text goes in as text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Tell screen-reader users something happened without moving their focus. */
export function announce(message) {
  const region = document.getElementById("announce");
  region.textContent = "";
  // A new text node after a tick is announced even when the message repeats.
  setTimeout(() => { region.textContent = message; }, 50);
}

export function when(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  return h("time", { datetime: at.toISOString(), title: at.toISOString() }, at.toLocaleString());
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(Number(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const hours = Math.floor(s / 3600);
  return `${hours} h ${Math.floor((s % 3600) / 60)} min`;
}

export function statusBadge(status) {
  return h("span", { class: "status", dataset: { status } }, status);
}
