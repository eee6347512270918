// The difficulty curve of an age-based job: one point per block, and the blocks that matter.

import { ageDifficulty, type AgePlan } from "./model";

const SVG = "http://www.w3.org/2000/svg";
const MAX_BLOCKS = 2000; // points drawn; a longer plan shows its last MAX_BLOCKS blocks
const HEIGHT = 220;
const PAD = { left: 34, right: 12, top: 14, bottom: 26 };

export interface Marker {
  key: "now" | "start" | "median" | "p95" | "valid";
  label: string;
  block: number;
}

/** The blocks the curve spans: around its markers (now, start, valid...), with as much
 * before them as they span, never before the job's first block. */
export function blockRange(plan: AgePlan): [number, number] {
  const marks = markers(plan).map((m) => m.block);
  if (marks.length === 0) return [plan.blockStart, plan.blockStart + 100];
  const first = Math.min(...marks);
  const last = Math.max(...marks);
  const span = Math.max(10, last - first);
  const to = last + Math.max(2, Math.ceil(span * 0.15));
  return [Math.max(plan.blockStart, first - span, to - MAX_BLOCKS + 1), to];
}

export function markers(plan: AgePlan): Marker[] {
  const found: Marker[] = [];
  const add = (key: Marker["key"], label: string, block: number | null) => {
    if (block !== null && Number.isFinite(block)) found.push({ key, label, block });
  };
  add("now", "now", plan.currentBlock);
  add("start", "start", plan.startBlock);
  add("median", "median", plan.expectedBlock);
  add("p95", "95 %", plan.validByBlock);
  add("valid", "valid", plan.validFromBlock);
  return found;
}

function el<K extends keyof SVGElementTagNameMap>(
  name: K,
  attrs: Record<string, string | number>,
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

/** A fresh SVG of the curve, `width` px wide (drawn at the size it is shown, so its labels
 * stay readable on a phone); `data-from`/`data-to` name its block range. */
export function drawCurve(plan: AgePlan, targetZeros: number | null, width: number): SVGSVGElement {
  const WIDTH = Math.max(280, Math.round(width));
  const [from, to] = blockRange(plan);
  const blocks = to - from + 1;
  const values: number[] = [];
  for (let block = from; block <= to; block += 1) {
    values.push(ageDifficulty(block - plan.blockStart, plan.range));
  }
  const top = Math.min(64, Math.max(...values, targetZeros ?? 0) + 1);
  const bottom = Math.max(0, Math.min(...values, targetZeros ?? 64) - 1);
  const x = (block: number) =>
    PAD.left + ((block - from) / Math.max(1, to - from)) * (WIDTH - PAD.left - PAD.right);
  const y = (zeros: number) =>
    PAD.top + ((top - zeros) / Math.max(1, top - bottom)) * (HEIGHT - PAD.top - PAD.bottom);

  const svg = el("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    class: "curve",
    "data-testid": "curve",
    "data-from": from,
    "data-to": to,
    "aria-label": `Required leading zeros from block ${from} to block ${to}`,
  });
  svg.append(
    el("line", {
      class: "axis",
      x1: PAD.left,
      y1: y(bottom),
      x2: WIDTH - PAD.right,
      y2: y(bottom),
    }),
  );
  svg.append(el("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: y(bottom) }));
  for (const zeros of [top, bottom]) {
    const tick = el("text", {
      class: "tick",
      x: PAD.left - 4,
      y: y(zeros) + 4,
      "text-anchor": "end",
    });
    tick.textContent = String(zeros);
    svg.append(tick);
  }
  for (const [block, anchor] of [
    [from, "start"],
    [to, "end"],
  ] as const) {
    const tick = el("text", { class: "tick", x: x(block), y: HEIGHT - 8, "text-anchor": anchor });
    tick.textContent = `block ${block}`;
    svg.append(tick);
  }
  if (targetZeros !== null) {
    svg.append(
      el("line", {
        class: "target",
        "data-testid": "curve-target",
        x1: PAD.left,
        x2: WIDTH - PAD.right,
        y1: y(targetZeros),
        y2: y(targetZeros),
      }),
    );
  }
  // One vertex per block: a step is drawn as the slope between two neighbouring blocks.
  const points = values.map((zeros, i) => `${x(from + i).toFixed(2)},${y(zeros).toFixed(2)}`);
  svg.append(el("polyline", { class: "line", points: points.join(" "), "data-points": blocks }));
  markers(plan)
    .filter((m) => m.block >= from && m.block <= to)
    .forEach((m, i) => {
      const at = x(m.block);
      svg.append(
        el("line", {
          class: `marker ${m.key}`,
          "data-marker": m.key,
          "data-block": m.block,
          x1: at,
          x2: at,
          y1: PAD.top,
          y2: y(bottom),
        }),
      );
      const left = at > WIDTH * 0.7; // labels near the right edge go on the line's left
      const label = el("text", {
        class: `label ${m.key}`,
        x: left ? at - 3 : at + 3,
        y: PAD.top + 10 + (i % 3) * 12,
        "text-anchor": left ? "end" : "start",
      });
      label.textContent = `${m.label} ${m.block}`;
      svg.append(label);
    });
  return svg;
}
