// The job view: one job (status, numbers, curve, proof, controls) or a batch (a row a job),
// kept fresh through whatever carries tool calls (the MCP host, or the page's own client).

import { drawCurve } from "./curve";
import * as fmt from "./format";
import {
  agePlan,
  allowedActions,
  expectedHashes,
  isTerminal,
  proofOf,
  refreshDelay,
  subjectOf,
  targetZeros,
  type JobRecord,
  type Subject,
} from "./model";

export interface ToolResult {
  isError?: boolean;
  structuredContent?: unknown;
  content?: Array<{ type: string; text?: string }>;
}

/** What carries the view's tool calls; a thrown error means the server cannot be reached. */
export interface Host {
  callTool(name: string, args: Record<string, unknown>): Promise<ToolResult>;
}

export const REFRESH_MS = 1000; // at most once a second
const ADVANCE_LIMIT_MS = 15_000; // a count advanced locally stops this long after the last look
const END_WAIT_SECONDS = 25; // each wait_for_job the view keeps open; under hosts' call timeouts
const TROUBLE_RETRY_MS = 2000; // after a call failed: soon, to pick up a restarted server

const ACTION_TOOLS = { pause: "pause_job", resume: "resume_job", cancel: "cancel_job" } as const;
type Action = keyof typeof ACTION_TOOLS;

export function textOf(result: ToolResult): string {
  return (result.content ?? []).map((c) => c.text ?? "").join("\n");
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { class?: string; text?: string; testid?: string } = {},
  ...children: Node[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined) node.textContent = props.text;
  if (props.testid) node.dataset["testid"] = props.testid;
  node.append(...children);
  return node;
}

function isUnknownJob(result: ToolResult): boolean {
  return result.isError === true && /no job with id/i.test(textOf(result));
}

/** Calls `tick` while the view is on screen and its page is shown, again after the delay
 * `tick` answers (null: nothing left to follow), never more often than once a second. */
export class Refresher {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private onScreen = true;
  private last = -Infinity;
  private running = false;
  private stopped = true;
  private delay = REFRESH_MS;

  constructor(
    root: HTMLElement,
    private readonly tick: () => Promise<number | null>,
  ) {
    if (typeof IntersectionObserver !== "undefined") {
      new IntersectionObserver((entries) => {
        this.onScreen = entries.some((e) => e.isIntersecting);
        this.schedule(0);
      }).observe(root);
    }
    // Back in view: look at once (still at most once a second).
    document.addEventListener("visibilitychange", () => this.schedule(0));
  }

  /** Look at once, then on the schedule. */
  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private get visible(): boolean {
    return document.visibilityState !== "hidden" && this.onScreen;
  }

  private schedule(delay: number): void {
    clearTimeout(this.timer);
    if (this.stopped || this.running || !this.visible) return;
    const wait = Math.max(delay, this.last + REFRESH_MS - Date.now(), 0);
    this.timer = setTimeout(() => void this.run(), wait);
  }

  private async run(): Promise<void> {
    if (this.stopped || this.running || !this.visible) return;
    this.running = true;
    this.last = Date.now();
    try {
      const next = await this.tick();
      if (next === null) this.stopped = true;
      else this.delay = next;
    } finally {
      this.running = false;
      this.schedule(this.delay);
    }
  }
}

/** One job, drawn once and updated in place (so buttons stay put while a person clicks). */
class JobCard {
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
    const stat = (label: string, value: HTMLElement) => h("div", {}, h("dt", { text: label }), value);
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
    this.counted = { hashes: p.hashes ?? 0, rate: job.status === "running" ? (p.hashrate ?? 0) : 0, at: Date.now() };
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
    this.best.textContent = target === null ? String(p.best_zeros ?? 0) : `${p.best_zeros ?? 0} of ${target}`;
    this.eta.textContent = timeToProof(job);
    const notes = [job.waiting_info?.note, p.note, job.blocked_by?.length ? `after ${job.blocked_by.join(", ")}` : null];
    this.note.textContent = notes.filter(Boolean).join(" · ");
    this.note.hidden = !this.note.textContent;
    this.updateCurve(job, target);
    this.updateProof(job);
    this.error.textContent = job.error ?? "";
    this.error.hidden = !job.error;
    const allowed = new Set(allowedActions(job.status));
    for (const [action, button] of Object.entries(this.buttons) as Array<[Action, HTMLButtonElement]>) {
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
      expected === null ? fmt.count(done) : `${fmt.count(done)} of ~${fmt.count(expected)} expected`;
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
    this.validFrom.textContent = job.valid_from_block === null || job.valid_from_block === undefined ? "—" : String(job.valid_from_block);
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

/** A batch: one row a job, with the controls each job's status allows. */
class BatchTable {
  readonly root = h("section", { class: "batch", testid: "batch" });
  private readonly heading = h("h1", { class: "title" });
  private readonly body = h("tbody");
  private readonly rows = new Map<string, HTMLTableRowElement>();

  constructor(private readonly onAction: (action: Action, jobId: string) => void) {
    const head = h("tr");
    for (const name of ["Job", "Status", "Hashes", "Best zeros", "Nonce", ""]) head.append(h("th", { text: name }));
    this.root.append(this.heading, h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), this.body)));
  }

  update(batchId: string | null, jobs: JobRecord[]): void {
    const ended = jobs.filter((j) => isTerminal(j.status)).length;
    this.heading.textContent = `${batchId ? `Batch ${batchId}` : "Jobs"}: ${ended} of ${jobs.length} ended`;
    for (const job of jobs) {
      let row = this.rows.get(job.job_id);
      if (!row) {
        row = h("tr");
        row.dataset["jobId"] = job.job_id;
        row.dataset["testid"] = "batch-row";
        this.rows.set(job.job_id, row);
        this.body.append(row);
      }
      this.fill(row, job);
    }
  }

  private fill(row: HTMLTableRowElement, job: JobRecord): void {
    const key = JSON.stringify([job.status, job.progress?.hashes, job.progress?.best_zeros, proofOf(job)?.nonce]);
    if (row.dataset["key"] === key) return;
    row.dataset["key"] = key;
    row.dataset["status"] = job.status;
    const target = targetZeros(job);
    const actions = h("td", { class: "row-actions" });
    for (const action of allowedActions(job.status)) {
      const button = h("button", { text: action[0]!.toUpperCase() + action.slice(1), testid: action });
      button.addEventListener("click", () => this.onAction(action, job.job_id));
      actions.append(button);
    }
    const id = h("td", { class: "mono", text: fmt.shortId(job.job_id) });
    id.title = job.job_id;
    row.replaceChildren(
      id,
      h("td", {}, h("span", { class: "badge", text: job.status, testid: "status" })),
      h("td", { text: fmt.count(job.progress?.hashes ?? 0) }),
      h("td", { text: target === null ? String(job.progress?.best_zeros ?? 0) : `${job.progress?.best_zeros ?? 0} / ${target}` }),
      h("td", { class: "mono", text: proofOf(job)?.nonce ?? "" }),
      actions,
    );
    row.querySelectorAll<HTMLElement>(".badge").forEach((b) => (b.dataset["status"] = job.status));
  }
}

/** The whole view: what a tool result is about, kept fresh until every job has ended. It
 * looks at the jobs on a schedule fitted to what can change next (`refreshDelay`), and keeps
 * one wait for their end open, so an end shows at once without frequent looks. */
export class JobView {
  private subject: Subject | null = null;
  private card: JobCard | null = null;
  private table: BatchTable | null = null;
  private jobs: JobRecord[] = [];
  private readonly looks: Refresher;
  private readonly ends: Refresher;
  private readonly message = h("p", { class: "message", testid: "message" });
  private readonly content = h("div");

  constructor(
    private readonly root: HTMLElement,
    private readonly host: Host,
    private readonly onTrouble: (error: unknown) => void = () => {},
    private readonly onHealthy: () => void = () => {},
  ) {
    this.root.append(this.message, this.content);
    this.message.hidden = true;
    this.looks = new Refresher(root, () => this.look());
    this.ends = new Refresher(root, () => this.waitForEnd());
    setInterval(() => this.card?.advance(), REFRESH_MS);
  }

  /** A tool result from the host (or the page's own first call). */
  showResult(result: ToolResult): void {
    const subject = result.isError ? null : subjectOf(result.structuredContent);
    if (subject === null) {
      this.say(result.isError ? textOf(result) : "This result is not about a pow-mcp job.");
      return;
    }
    this.show(subject);
  }

  show(subject: Subject): void {
    this.subject = subject;
    this.say(null);
    const known = subject.kind === "job" ? (subject.record ? [subject.record] : []) : subject.records;
    if (known.length) this.render(known);
    const complete = subject.kind === "job" ? known.length === 1 : known.length === subject.jobIds.length;
    if (complete && known.every((j) => isTerminal(j.status))) return;
    this.looks.start();
    this.ends.start();
  }

  say(text: string | null): void {
    this.message.textContent = text ?? "";
    this.message.hidden = text === null;
  }

  private notFound(jobId: string): void {
    this.stop();
    this.content.replaceChildren();
    this.card = null;
    this.table = null;
    this.root.dataset["state"] = "not-found";
    this.say(
      `Job ${jobId} was not found. It may have been removed after the retention period, or ` +
        "it belongs to someone else.",
    );
  }

  private stop(): void {
    this.looks.stop();
    this.ends.stop();
  }

  private render(jobs: JobRecord[]): void {
    this.jobs = jobs;
    this.root.dataset["state"] = "shown";
    if (this.subject?.kind === "job") {
      if (!this.card) {
        this.card = new JobCard((action, id) => void this.act(action, id));
        this.content.replaceChildren(this.card.root);
      }
      this.card.update(jobs[0]!);
    } else {
      if (!this.table) {
        this.table = new BatchTable((action, id) => void this.act(action, id));
        this.content.replaceChildren(this.table.root);
      }
      this.table.update(this.subject?.kind === "batch" ? this.subject.batchId : null, jobs);
    }
    if (jobs.every((j) => isTerminal(j.status))) this.stop();
  }

  /** A tool call whose answer holds the jobs; null when it failed (and was said). */
  private async fetch(name: string, args: Record<string, unknown>): Promise<JobRecord[] | null> {
    let result: ToolResult;
    try {
      result = await this.host.callTool(name, args);
    } catch (error) {
      this.onTrouble(error);
      return null; // the page says the server is gone, and picks up when it is back
    }
    this.onHealthy();
    const subject = this.subject;
    if (subject?.kind === "job" && isUnknownJob(result)) {
      this.notFound(subject.jobId);
      return null;
    }
    if (result.isError) {
      this.say(textOf(result));
      return null;
    }
    this.say(null);
    const content = result.structuredContent as Record<string, unknown> | undefined;
    return subject?.kind === "job" ? [content as unknown as JobRecord] : ((content?.["jobs"] as JobRecord[]) ?? []);
  }

  /** One look at the jobs; the delay until the next one, or null once all have ended. */
  private async look(): Promise<number | null> {
    const subject = this.subject;
    if (subject === null) return null;
    const jobs =
      subject.kind === "job"
        ? await this.fetch("query_proof_of_work_status", { job_id: subject.jobId })
        : await this.fetch("wait_for_jobs", { job_ids: subject.jobIds, timeout_seconds: 0 });
    if (jobs === null) return TROUBLE_RETRY_MS;
    this.render(jobs);
    const delays = jobs.map(refreshDelay).filter((d): d is number => d !== null);
    return delays.length ? Math.min(...delays) : null;
  }

  /** One wait for the end of a job (of any unfinished job of a batch). */
  private async waitForEnd(): Promise<number | null> {
    const subject = this.subject;
    if (subject === null) return null;
    if (subject.kind === "job") {
      const ended = await this.fetch("wait_for_job", { job_id: subject.jobId, timeout_seconds: END_WAIT_SECONDS });
      if (ended === null) return 5 * TROUBLE_RETRY_MS;
      this.render(ended);
      return isTerminal(ended[0]!.status) ? null : 0;
    }
    const known = this.jobs.length ? this.jobs : subject.records;
    const open = known.length ? known.filter((j) => !isTerminal(j.status)).map((j) => j.job_id) : subject.jobIds;
    if (open.length === 0) return null;
    const ended = await this.fetch("wait_for_jobs", { job_ids: open, mode: "any", timeout_seconds: END_WAIT_SECONDS });
    if (ended === null) return 5 * TROUBLE_RETRY_MS;
    this.looks.start(); // one look at the whole batch, with the job that ended
    return 0;
  }

  private async act(action: Action, jobId: string): Promise<void> {
    this.card?.busy(true);
    try {
      const result = await this.host.callTool(ACTION_TOOLS[action], { job_id: jobId });
      this.say(result.isError ? textOf(result) : null);
    } catch (error) {
      this.onTrouble(error);
    } finally {
      this.card?.busy(false);
    }
    this.looks.start(); // at once, or a second after the last look
    this.ends.start();
  }
}
