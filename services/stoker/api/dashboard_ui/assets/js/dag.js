// A pipeline's steps as a DAG: which steps each step waits for (read from the definition),
// a layout in columns by dependency depth, and the SVG drawing. Pure functions but `dagSvg`.

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 170;
const NODE_H = 46;
const GAP_X = 60;
const GAP_Y = 18;
const PAD = 10;

function referencedSteps(value, found) {
  if (Array.isArray(value)) {
    for (const item of value) referencedSteps(item, found);
  } else if (value && typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) {
      if (key === "Get" && typeof inner === "string" && inner.startsWith("Steps.")) {
        found.add(inner.split(".")[1]);
      } else if (key !== "IfSteps" && key !== "ElseSteps") {
        referencedSteps(inner, found);
      }
    }
  }
  return found;
}

/**
 * `Map(step name -> Set of step names it waits for)` from a definition: its `DependsOn`, the
 * steps whose properties it reads (`{"Get": "Steps.X..."}`), and, for a step in a condition's
 * branch, the condition step. Steps of nested branches are included.
 */
export function dependencies(definition) {
  const parents = new Map();
  const visit = (steps, condition) => {
    for (const step of steps || []) {
      const waits = referencedSteps(step.Arguments || {}, new Set());
      for (const name of step.DependsOn || []) waits.add(name);
      if (condition) waits.add(condition);
      waits.delete(step.Name);
      parents.set(step.Name, waits);
      const args = step.Arguments || {};
      if (step.Type === "Condition") {
        visit(args.IfSteps, step.Name);
        visit(args.ElseSteps, step.Name);
      }
    }
  };
  visit((definition || {}).Steps, null);
  return parents;
}

/**
 * Columns by depth: a step with no parents is in column 0, any other one column right of its
 * deepest parent. Steps named only by `names` (no definition) get column 0; a cycle, which a
 * valid definition cannot hold, ends at the step already being placed.
 */
export function layers(names, parents) {
  const depth = new Map();
  const placing = new Set();
  const place = (name) => {
    if (depth.has(name)) return depth.get(name);
    if (placing.has(name)) return 0;
    placing.add(name);
    let d = 0;
    for (const parent of parents.get(name) || []) {
      if (names.includes(parent)) d = Math.max(d, place(parent) + 1);
    }
    placing.delete(name);
    depth.set(name, d);
    return d;
  };
  const columns = [];
  for (const name of names) {
    const d = place(name);
    (columns[d] ||= []).push(name);
  }
  return columns.map((column) => column || []);
}

/** Node positions and edges for `layers` output: `{width, height, nodes: Map, edges}`. */
export function layout(columns, parents) {
  const nodes = new Map();
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  columns.forEach((column, x) => {
    const used = column.length * NODE_H + (column.length - 1) * GAP_Y;
    const top = (height - used) / 2;
    column.forEach((name, y) => {
      nodes.set(name, { x: PAD + x * (NODE_W + GAP_X), y: top + y * (NODE_H + GAP_Y) });
    });
  });
  const edges = [];
  for (const [name, at] of nodes) {
    for (const parent of parents.get(name) || []) {
      if (nodes.has(parent)) edges.push({ from: parent, to: name, a: nodes.get(parent), b: at });
    }
  }
  const width = PAD * 2 + Math.max(1, columns.length) * NODE_W + (columns.length - 1) * GAP_X;
  return { width, height, nodes, edges };
}

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * The drawing: one box per step with its name and state (state also as text, never colour
 * alone). `steps` are the execution's step views. Hidden from screen readers' detail: the
 * image has a label, and the steps table under it is the text alternative.
 */
export function dagSvg(steps, parents, label) {
  const names = steps.map((s) => s.name);
  const drawn = layout(layers(names, parents), parents);
  const svg = el("svg", {
    class: "dag", role: "img", "aria-label": label,
    viewBox: `0 0 ${drawn.width} ${drawn.height}`, width: drawn.width, height: drawn.height,
  });
  const defs = el("defs", {});
  const marker = el("marker", { id: "dag-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrowhead" }));
  defs.append(marker);
  svg.append(defs);
  for (const edge of drawn.edges) {
    const x1 = edge.a.x + NODE_W;
    const y1 = edge.a.y + NODE_H / 2;
    const x2 = edge.b.x;
    const y2 = edge.b.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    svg.append(el("path", {
      class: "dag-edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
      "marker-end": "url(#dag-arrow)", "data-from": edge.from, "data-to": edge.to,
    }));
  }
  for (const step of steps) {
    const at = drawn.nodes.get(step.name);
    const group = el("g", { class: "dag-node", "data-step": step.name, "data-status": step.status, transform: `translate(${at.x},${at.y})` });
    group.append(el("rect", { width: NODE_W, height: NODE_H, rx: 6 }));
    group.append(el("text", { x: 10, y: 18, class: "dag-name" }, step.name.length > 22 ? `${step.name.slice(0, 21)}…` : step.name));
    group.append(el("text", { x: 10, y: 36, class: "dag-state" }, step.status));
    svg.append(group);
  }
  return svg;
}
