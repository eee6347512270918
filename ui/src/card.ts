// One job, drawn once and updated in place: status, numbers, curve, proof, controls.

import { drawCurve } from "./curve";
import { h } from "./dom";
import * as fmt from "./format";
import {
  agePlan,
  allowedActions,
  expectedHashes,
  isTerminal,
  proofOf,
  targetZeros,
  type JobRecord,
} from "./model";
import { REFRESH_MS } from "./refresher";

export type Action = "pause" | "resume" | "cancel";
const ADVANCE_LIMIT_MS = 15_000; // a count advanced locally stops this long after the last look

/** One job, drawn once and updated in place (so buttons stay put while a person clicks). */
export class JobCard {
  readonly root = h("section", { class: "job", testid: "job" });
  private readonly status = h("span", { class: "badge", testid: "status" });
  private readonly title = h("h1", { class: "title" });
  private readonly subtitle = h("p", { class: "subtitle", testid: "subtitle" });
  private readonly hashes = h("dd", { testid: "hashes" });
  private readonly bar = h("progress", { testid: "hash-progress" });
  private readonly rate = h("dd", { testid: "hashrate" });
  private readonly best = h("dd", { testid: "best-zeros" });
  private readonly eta = h("dd", { testid: "eta" });
  private readonly note = h("p", { class: "note", testid: "note" });
  private readonly figure = h("figure", { class: "plan", testid: "plan" });
  private readonly legend = h("figcaption", { class: "legend" });
  private readonly proof = h("section", { class: "proof", testid: "proof" });
  private readonly nonce = h("code", { testid: "nonce" });
  private readonly hash = h("code", { class: "hash", testid: "hash" });
  private readonly validFrom = h("dd", { testid: "valid-from-block" });
  private readonly copy = h("button", { class: "copy", text: "Copy", testid: "copy" });
  private readonly error = h("p", { class: "error", testid: "error" });
  private readonly actions = h("div", { class: "actions" });
  private readonly buttons: Record<Action, HTMLButtonElement>;
  private curveKey = "";
  private record: JobRecord | null = null;
  private counted = { hashes: 0, rate: 0, at: 0 };

  constructor(onAction: (action: Action, jobId: string) => void) {
    const stat = (label: string, value: HTMLElement) =>
      h("div", {}, h("dt", { text: label }), value);
    this.buttons = {
      pause: h("button", { text: "Pause", testid: "pause" }),
      resume: h("button", { text: "Resume", testid: "resume" }),
      cancel: h("button", { class: "danger", text: "Cancel", testid: "cancel" }),
    };
    for (const action of Object.keys(this.buttons) as Action[]) {
      this.buttons[action].addEventListener("click", () => {
        if (this.record) onAction(action, this.record.job_id);
      });
      this.actions.append(this.buttons[action]);
    }
    this.copy.addEventListener("click", () => void this.copyProof());
    new ResizeObserver(() => {
      if (this.record) this.updateCurve(this.record, targetZeros(this.record));
    }).observe(this.figure);
    this.proof.append(
      h("h2", { text: "Proof" }),
      h(
        "dl",
        { class: "proof-fields" },
        h("div", {}, h("dt", { text: "Nonce" }), h("dd", {}, this.nonce)),
        h("div", {}, h("dt", { text: "Hash" }), h("dd", {}, this.hash)),
        h("div", {}, h("dt", { text: "Valid from block" }), this.validFrom),
      ),
      this.copy,
    );
    this.figure.append(this.legend);
    this.root.append(
      h("header", {}, this.title, this.status),
      this.subtitle,
      h(
        "dl",
        { class: "stats" },
        stat("Hashes", this.hashes),
        stat("Hash rate", this.rate),
        stat("Best zeros", this.best),
        stat("Time to proof", this.eta),
      ),
      this.bar,
      this.note,
      this.figure,
      this.proof,
      this.error,
      this.actions,
    );
  }

  busy(on: boolean): void {
    for (const button of Object.values(this.buttons)) button.disabled = on;
  }

  update(job: JobRecord): void {
    this.record = job;
    const p = job.progress ?? {};
    const target = targetZeros(job);
    this.counted = {
      hashes: p.hashes ?? 0,
      rate: job.status === "running" ? (p.hashrate ?? 0) : 0,
      at: Date.now(),
    };
    this.root.dataset["status"] = job.status;
    this.root.dataset["jobId"] = job.job_id;
    this.title.textContent = `Job ${job.job_id}`;
    this.status.textContent = job.status;
    this.status.dataset["status"] = job.status;
    const data = job.job_data ?? {};
    const label = typeof data["label"] === "string" ? `${data["label"]} · ` : "";
    this.subtitle.textContent = `${label}${String(data["prefix"] ?? "")}`;
    this.showHashes(this.counted.hashes);
    this.rate.textContent = job.status === "running" ? fmt.rate(p.hashrate ?? 0) : "—";
    this.best.textContent =
      target === null ? String(p.best_zeros ?? 0) : `${p.best_zeros ?? 0} of ${target}`;
    this.eta.textContent = timeToProof(job);
    const notes = [
      job.waiting_info?.note,
      p.note,
      job.blocked_by?.length ? `after ${job.blocked_by.join(", ")}` : null,
    ];
    this.note.textContent = notes.filter(Boolean).join(" · ");
    this.note.hidden = !this.note.textContent;
    this.updateCurve(job, target);
    this.updateProof(job);
    this.error.textContent = job.error ?? "";
    this.error.hidden = !job.error;
    const allowed = new Set(allowedActions(job.status));
    for (const [action, button] of Object.entries(this.buttons) as Array<
      [Action, HTMLButtonElement]
    >) {
      button.hidden = !allowed.has(action);
    }
    this.actions.hidden = allowed.size === 0;
  }

  /** Between two looks at the server, the hash count goes on at the last measured rate. */
  advance(): void {
    if (this.record?.status !== "running" || this.counted.rate <= 0) return;
    const elapsed = Math.min(Date.now() - this.counted.at, ADVANCE_LIMIT_MS) / 1000;
    this.showHashes(this.counted.hashes + this.counted.rate * elapsed);
  }

  private showHashes(done: number): void {
    const expected = this.record ? expectedHashes(targetZeros(this.record)) : null;
    this.hashes.textContent =
      expected === null
        ? fmt.count(done)
        : `${fmt.count(done)} of ~${fmt.count(expected)} expected`;
    this.bar.hidden = expected === null;
    this.bar.max = expected ?? 1;
    this.bar.value = Math.min(done, expected ?? 0);
  }

  private updateCurve(job: JobRecord, target: number | null): void {
    const plan = agePlan(job);
    this.figure.hidden = plan === null;
    if (plan === null) return;
    const width = this.figure.clientWidth || 600;
    const key = JSON.stringify([plan, target, width]);
    if (key === this.curveKey) return;
    this.curveKey = key;
    this.figure.querySelector("svg")?.remove();
    this.figure.prepend(drawCurve(plan, target, width));
    const parts = [
      plan.currentBlock !== null ? `now at block ${plan.currentBlock}` : null,
      plan.startBlock !== null ? `hashing starts at ${plan.startBlock}` : null,
      plan.expectedBlock !== null ? `valid by ${plan.expectedBlock} (median)` : null,
      plan.validByBlock !== null ? `by ${plan.validByBlock} (95 %)` : null,
      plan.validFromBlock !== null ? `proof valid from ${plan.validFromBlock}` : null,
    ];
    this.legend.textContent = `Required zeros by block: ${parts.filter(Boolean).join(", ")}.`;
  }

  private updateProof(job: JobRecord): void {
    const proof = proofOf(job);
    const shown = job.status === "completed" && proof !== null;
    this.proof.hidden = !shown;
    if (!shown) return;
    this.nonce.textContent = proof.nonce ?? "";
    this.hash.textContent = proof.hash ?? "";
    this.validFrom.textContent =
      job.valid_from_block === null || job.valid_from_block === undefined
        ? "—"
        : String(job.valid_from_block);
  }

  private async copyProof(): Promise<void> {
    const text = `nonce ${this.nonce.textContent}\nhash ${this.hash.textContent}`;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // A host may deny the clipboard to its frame: fall back to the selection command.
      const area = h("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    this.copy.textContent = "Copied";
    setTimeout(() => (this.copy.textContent = "Copy"), 1500);
  }
}

function timeToProof(job: JobRecord): string {
  if (isTerminal(job.status)) return "—";
  const w = job.waiting_info;
  if (job.status === "waiting" && w?.expected_valid_block != null && w.current_age != null) {
    const now = Number(job.job_data?.["block_start"]) + w.current_age;
    const blocks = Math.max(0, w.expected_valid_block - now);
    if (Number.isFinite(blocks)) return `~${blocks} blocks`;
  }
  return fmt.seconds(job.progress?.eta_seconds);
}
