// A batch: one row a job, with the controls each job's status allows.

import type { Action } from "./card";
import { h } from "./dom";
import * as fmt from "./format";
import { allowedActions, isTerminal, proofOf, targetZeros, type JobRecord } from "./model";

/** A batch: one row a job, with the controls each job's status allows. */
export class BatchTable {
  readonly root = h("section", { class: "batch", testid: "batch" });
  private readonly heading = h("h1", { class: "title" });
  private readonly body = h("tbody");
  private readonly rows = new Map<string, HTMLTableRowElement>();

  constructor(private readonly onAction: (action: Action, jobId: string) => void) {
    const head = h("tr");
    for (const name of ["Job", "Status", "Hashes", "Best zeros", "Nonce", ""])
      head.append(h("th", { text: name }));
    this.root.append(
      this.heading,
      h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), this.body)),
    );
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
    const key = JSON.stringify([
      job.status,
      job.progress?.hashes,
      job.progress?.best_zeros,
      proofOf(job)?.nonce,
    ]);
    if (row.dataset["key"] === key) return;
    row.dataset["key"] = key;
    row.dataset["status"] = job.status;
    const target = targetZeros(job);
    const actions = h("td", { class: "row-actions" });
    for (const action of allowedActions(job.status)) {
      const button = h("button", {
        text: action[0]!.toUpperCase() + action.slice(1),
        testid: action,
      });
      button.addEventListener("click", () => this.onAction(action, job.job_id));
      actions.append(button);
    }
    const id = h("td", { class: "mono", text: fmt.shortId(job.job_id) });
    id.title = job.job_id;
    row.replaceChildren(
      id,
      h("td", {}, h("span", { class: "badge", text: job.status, testid: "status" })),
      h("td", { text: fmt.count(job.progress?.hashes ?? 0) }),
      h("td", {
        text:
          target === null
            ? String(job.progress?.best_zeros ?? 0)
            : `${job.progress?.best_zeros ?? 0} / ${target}`,
      }),
      h("td", { class: "mono", text: proofOf(job)?.nonce ?? "" }),
      actions,
    );
    row.querySelectorAll<HTMLElement>(".badge").forEach((b) => (b.dataset["status"] = job.status));
  }
}
