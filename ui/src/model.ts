// What the view knows of a job: the record the tools return, and numbers derived from it.

export type Status =
  "queued" | "waiting" | "running" | "paused" | "completed" | "failed" | "cancelled";

export interface Proof {
  hash?: string | null;
  nonce?: string | null;
  iterations?: number | null;
  difficulty?: number | null;
}

export interface WaitingInfo {
  current_age?: number | null;
  current_difficulty?: number | null;
  start_difficulty?: number | null;
  blocks_remaining?: number | null;
  plan?: string | null;
  target_zeros?: number | null;
  start_block?: number | null;
  expected_valid_block?: number | null;
  valid_by_block?: number | null;
  note?: string | null;
}

export interface JobRecord {
  job_id: string;
  status: Status;
  created_at?: string;
  completed_at?: string | null;
  job_data?: Record<string, unknown>;
  progress?: {
    hashes?: number;
    hashrate?: number;
    best_zeros?: number;
    eta_seconds?: number | null;
    best_nonce?: string | null;
    best_hash?: string | null;
    note?: string | null;
  };
  error?: string | null;
  result?: { proof_of_work?: Proof | null } | null;
  waiting_info?: WaitingInfo | null;
  valid_from_block?: number | null;
  blocked_by?: string[];
  batch_id?: string | null;
}

export const TERMINAL: ReadonlySet<Status> = new Set(["completed", "failed", "cancelled"]);

export function isTerminal(status: Status): boolean {
  return TERMINAL.has(status);
}

/** The controls a status allows, as pow-mcp's tools accept them. */
export function allowedActions(status: Status): Array<"pause" | "resume" | "cancel"> {
  switch (status) {
    case "queued":
    case "waiting":
    case "running":
      return ["pause", "cancel"];
    case "paused":
      return ["resume", "cancel"];
    default:
      return [];
  }
}

const MAX_DIFFICULTY = 64;

/** Structs' age-based difficulty, as pow_mcp.pow.difficulty.age_difficulty computes it. */
export function ageDifficulty(age: number, range: number): number {
  if (age <= 1) return MAX_DIFFICULTY;
  const drop = Math.trunc((Math.log10(age) / Math.log10(range)) * 63);
  return Math.max(1, MAX_DIFFICULTY - drop);
}

/** What an age-based job's curve needs; null for a job with a fixed difficulty. */
export interface AgePlan {
  blockStart: number;
  range: number;
  currentBlock: number | null;
  startBlock: number | null;
  expectedBlock: number | null;
  validByBlock: number | null;
  validFromBlock: number | null;
  targetZeros: number | null;
}

export function agePlan(job: JobRecord): AgePlan | null {
  const data = job.job_data ?? {};
  const blockStart = data["block_start"];
  const range = data["difficulty_range"];
  if (typeof blockStart !== "number" || typeof range !== "number" || !(range > 1)) return null;
  // Where the chain is now is known while the job is live; an ended job's is history.
  const w = (isTerminal(job.status) ? null : job.waiting_info) ?? {};
  const currentBlock = typeof w.current_age === "number" ? blockStart + w.current_age : null;
  return {
    blockStart,
    range,
    currentBlock,
    // Under a fixed TARGET_DIFFICULTY_START there is no plan, only the blocks still to wait.
    startBlock:
      w.start_block ??
      (currentBlock !== null && typeof w.blocks_remaining === "number" && w.blocks_remaining > 0
        ? currentBlock + w.blocks_remaining
        : null),
    expectedBlock: w.expected_valid_block ?? null,
    validByBlock: w.valid_by_block ?? null,
    validFromBlock: job.valid_from_block ?? null,
    targetZeros: w.target_zeros ?? null,
  };
}

/** The zeros the job is after: its fixed difficulty, or its plan's target. */
export function targetZeros(job: JobRecord): number | null {
  const fixed = job.job_data?.["difficulty"];
  if (typeof fixed === "number") return fixed;
  const met = proofOf(job)?.difficulty;
  if (job.status === "completed" && typeof met === "number") return met;
  const w = job.waiting_info;
  return w?.target_zeros ?? w?.start_difficulty ?? w?.current_difficulty ?? null;
}

/** Mean hashes to a proof at `zeros`: each hex digit is 0 with chance 1/16. */
export function expectedHashes(zeros: number | null): number | null {
  return zeros === null ? null : 16 ** zeros;
}

export function proofOf(job: JobRecord): Proof | null {
  return job.result?.proof_of_work ?? null;
}

// How soon a view looks again, by what can change next: a long job's numbers move slowly
// (its hash count is advanced locally in between), a paused or waiting one hardly at all.
// Ends are not waited for here: the view keeps a wait_for_job call open for them, timed to
// answer just before the next look is due, and each answer of that wait counts as a look. Not slower than every 10 s, since a look is also
// how a page notices that it lost the server (a wait cut off is retried by the SDK).
const SECOND = 1000;
const SLOWEST = 10 * SECOND;

export function refreshDelay(job: JobRecord): number | null {
  switch (job.status) {
    case "running": {
      const eta = job.progress?.eta_seconds;
      const spread = ((eta ?? 60) * SECOND) / 6; // about six looks over the expected rest
      return Math.min(SLOWEST, Math.max(SECOND, spread));
    }
    case "queued":
      return job.blocked_by?.length ? 5 * SECOND : SECOND; // about to start, unless blocked
    case "waiting":
      return 5 * SECOND; // one block at Structs' pace
    case "paused":
      return SLOWEST; // only a button moves it, and a button refreshes at once
    default:
      return null;
  }
}

/** The jobs a tool result is about: one job, a batch, or several records. */
export type Subject =
  | { kind: "job"; jobId: string; record: JobRecord | null }
  | { kind: "batch"; batchId: string | null; jobIds: string[]; records: JobRecord[] };

export function subjectOf(content: unknown): Subject | null {
  if (!content || typeof content !== "object") return null;
  const c = content as Record<string, unknown>;
  if (Array.isArray(c["job_ids"])) {
    const records = Array.isArray(c["jobs"]) ? (c["jobs"] as JobRecord[]) : [];
    return {
      kind: "batch",
      batchId: typeof c["batch_id"] === "string" ? c["batch_id"] : null,
      jobIds: c["job_ids"] as string[],
      records,
    };
  }
  if (Array.isArray(c["jobs"])) {
    const records = c["jobs"] as JobRecord[];
    return { kind: "batch", batchId: null, jobIds: records.map((r) => r.job_id), records };
  }
  if (typeof c["job_id"] === "string") {
    const isRecord = typeof c["progress"] === "object";
    const record = isRecord
      ? (c as unknown as JobRecord)
      : c["job"] && typeof c["job"] === "object"
        ? (c["job"] as JobRecord)
        : null;
    return { kind: "job", jobId: c["job_id"], record };
  }
  return null;
}
