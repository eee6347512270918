// The job view: one job or a batch, kept fresh through whatever carries tool calls (the MCP
// host, or the page's own client).

import { BatchTable } from "./batch";
import { JobCard, type Action } from "./card";
import { h } from "./dom";
import { isTerminal, refreshDelay, subjectOf, type JobRecord, type Subject } from "./model";
import { REFRESH_MS, Refresher } from "./refresher";

export interface ToolResult {
  isError?: boolean;
  structuredContent?: unknown;
  content?: Array<{ type: string; text?: string }>;
}

/** What carries the view's tool calls; a thrown error means the server cannot be reached. */
export interface Host {
  callTool(name: string, args: Record<string, unknown>): Promise<ToolResult>;
}

const END_WAIT_SECONDS = 25; // a batch's wait (or one before any record); under hosts' call timeouts
const TROUBLE_RETRY_MS = 2000; // after a call failed: soon, to pick up a restarted server

const ACTION_TOOLS: Record<Action, string> = {
  pause: "pause_job",
  resume: "resume_job",
  cancel: "cancel_job",
};

export function textOf(result: ToolResult): string {
  return (result.content ?? []).map((c) => c.text ?? "").join("\n");
}

function isUnknownJob(result: ToolResult): boolean {
  return result.isError === true && /no job with id/i.test(textOf(result));
}

/** How long one wait for a job's end stays open: it answers a second before the next look is
 * due, and its answer (the record, as a look gives it) puts that look off, so a view following
 * a long job makes one call per look instead of two. */
function endWaitSeconds(lookDelay: number | null): number {
  return lookDelay === null ? END_WAIT_SECONDS : Math.max(1, (lookDelay - REFRESH_MS) / 1000);
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
    const known =
      subject.kind === "job" ? (subject.record ? [subject.record] : []) : subject.records;
    if (known.length) this.render(known);
    const complete =
      subject.kind === "job" ? known.length === 1 : known.length === subject.jobIds.length;
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
    return subject?.kind === "job"
      ? [content as unknown as JobRecord]
      : ((content?.["jobs"] as JobRecord[]) ?? []);
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
      const ended = await this.fetch("wait_for_job", {
        job_id: subject.jobId,
        timeout_seconds: endWaitSeconds(this.jobs[0] ? refreshDelay(this.jobs[0]) : null),
      });
      if (ended === null) return 5 * TROUBLE_RETRY_MS;
      this.render(ended);
      const delay = refreshDelay(ended[0]!);
      if (delay !== null) this.looks.postpone(delay); // the answer was as good as a look
      return isTerminal(ended[0]!.status) ? null : 0;
    }
    const known = this.jobs.length ? this.jobs : subject.records;
    const open = known.length
      ? known.filter((j) => !isTerminal(j.status)).map((j) => j.job_id)
      : subject.jobIds;
    if (open.length === 0) return null;
    const ended = await this.fetch("wait_for_jobs", {
      job_ids: open,
      mode: "any",
      timeout_seconds: END_WAIT_SECONDS,
    });
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
