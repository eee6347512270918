// The browser pages of `pow-mcp --transport http`: /jobs (the caller's jobs, live) and
// /jobs/{job_id} (the job view). Their data comes from the server's own MCP endpoint, with
// the bearer token a person types once (kept in sessionStorage, never in a URL or cookie).

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

import * as fmt from "./format";
import type { Status } from "./model";
import { Refresher } from "./refresher";
import { JobView, textOf, type Host, type ToolResult } from "./view";
import "./style.css";

const TOKEN_KEY = "pow-mcp-token";
const LIST_REFRESH_MS = 2000;

class NeedsToken extends Error {}

/** An MCP client to this page's own server, made again whenever the server went away. */
class ServerLink implements Host {
  private client: Client | null = null;
  private refused = false;
  private lastStatus = 0;

  constructor(private readonly endpoint: URL) {}

  get token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  useToken(token: string): void {
    sessionStorage.setItem(TOKEN_KEY, token);
    this.refused = false;
  }

  async callTool(name: string, args: Record<string, unknown>): Promise<ToolResult> {
    if (this.refused) throw new NeedsToken("a token is needed");
    try {
      this.client ??= await this.connect();
      return (await this.client.callTool({ name, arguments: args })) as ToolResult;
    } catch (error) {
      const client = this.client;
      this.client = null;
      void client?.close().catch(() => {});
      if (this.lastStatus === 401) {
        this.refused = true;
        throw new NeedsToken(this.token ? "the token was refused" : "a token is needed");
      }
      throw error;
    }
  }

  private async connect(): Promise<Client> {
    const headers: Record<string, string> = {};
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    const transport = new StreamableHTTPClientTransport(this.endpoint, {
      requestInit: { headers },
      fetch: async (input, init) => {
        // The page needs no messages the server starts itself: no standing GET stream, one
        // connection fewer per open page (405 tells the client the server offers none).
        if (init?.method === "GET") return new Response(null, { status: 405 });
        const response = await fetch(input, init);
        this.lastStatus = response.status;
        return response;
      },
    });
    const client = new Client({ name: "pow-mcp jobs page", version: "1" });
    this.lastStatus = 0;
    await client.connect(transport);
    return client;
  }
}

/** The line at the top that says whether the page has its server, and the token form. */
class Connection {
  private readonly line = document.getElementById("connection")!;
  private readonly form = document.getElementById("token-form") as HTMLFormElement;
  private readonly input = this.form.querySelector("input")!;
  private readonly problem = this.form.querySelector(".form-error")!;

  constructor(private readonly link: ServerLink) {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = this.input.value.trim();
      if (!token) return;
      this.link.useToken(token);
      this.input.value = "";
      this.form.hidden = true;
      this.show("connecting", "Connecting…");
    });
  }

  healthy(): void {
    this.form.hidden = true;
    this.show("connected", "Connected");
  }

  trouble(error: unknown): void {
    if (error instanceof NeedsToken) {
      const refused = error.message.includes("refused");
      this.form.hidden = false;
      this.problem.textContent = refused ? "That token was refused. Try again." : "";
      this.show("token", "This server needs an access token.");
      if (refused) sessionStorage.removeItem(TOKEN_KEY);
      return;
    }
    this.show("lost", `Lost the server at ${fmt.clock(new Date())}; trying again every second…`);
  }

  private show(state: string, text: string): void {
    if (this.line.dataset["state"] === state && state !== "lost") return;
    if (this.line.dataset["state"] === "lost" && state === "lost") return; // keep the first time
    this.line.dataset["state"] = state;
    this.line.textContent = text;
  }
}

/** /jobs: the caller's jobs, newest first, refreshed while the page is shown. */
class JobsList {
  private readonly body = document.createElement("tbody");
  private readonly summary = document.createElement("p");

  constructor(
    root: HTMLElement,
    private readonly link: ServerLink,
    private readonly connection: Connection,
  ) {
    const table = document.createElement("table");
    const head = document.createElement("tr");
    for (const name of ["Job", "Status", "Created", "Zeros", "Hashes", "Nonce"]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.append(th);
    }
    table.createTHead().append(head);
    table.append(this.body);
    this.summary.className = "subtitle";
    this.summary.dataset["testid"] = "jobs-summary";
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.append(table);
    const title = document.createElement("h1");
    title.className = "title";
    title.textContent = "Jobs";
    root.append(title, this.summary, wrap);
    new Refresher(root, () => this.refresh()).start();
  }

  private async refresh(): Promise<number> {
    let result: ToolResult;
    try {
      result = await this.link.callTool("list_jobs", { limit: 100 });
    } catch (error) {
      this.connection.trouble(error);
      return LIST_REFRESH_MS;
    }
    this.connection.healthy();
    if (result.isError) {
      this.summary.textContent = textOf(result);
      return LIST_REFRESH_MS;
    }
    const page = result.structuredContent as { jobs: Summary[]; total: number };
    this.summary.textContent =
      page.total === 0
        ? "No jobs yet."
        : `${page.total} job${page.total === 1 ? "" : "s"}, newest first.`;
    this.body.replaceChildren(...page.jobs.map((job) => row(job)));
    return LIST_REFRESH_MS;
  }
}

interface Summary {
  job_id: string;
  status: Status;
  created_at?: string | null;
  difficulty?: number | null;
  hashes?: number;
  nonce?: string | null;
}

function row(job: Summary): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.dataset["testid"] = "job-row";
  tr.dataset["jobId"] = job.job_id;
  tr.dataset["status"] = job.status;
  const link = document.createElement("a");
  link.href = `/jobs/${encodeURIComponent(job.job_id)}`;
  link.textContent = job.job_id;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset["status"] = job.status;
  badge.textContent = job.status;
  const created = job.created_at ? new Date(job.created_at).toLocaleString() : "";
  const cells: Array<Node | string> = [
    link,
    badge,
    created,
    job.difficulty === null || job.difficulty === undefined ? "" : String(job.difficulty),
    fmt.count(job.hashes ?? 0),
    job.nonce ?? "",
  ];
  for (const cell of cells) {
    const td = document.createElement("td");
    td.append(cell);
    tr.append(td);
  }
  return tr;
}

function main(): void {
  const link = new ServerLink(new URL("/mcp", location.origin));
  const connection = new Connection(link);
  const root = document.getElementById("root")!;
  const match = /^\/jobs\/([^/]+)\/?$/.exec(location.pathname);
  if (match === null) {
    document.title = "pow-mcp: jobs";
    new JobsList(root, link, connection);
    return;
  }
  const jobId = decodeURIComponent(match[1]!);
  document.title = `pow-mcp: ${jobId}`;
  const view = new JobView(
    root,
    link,
    (error) => connection.trouble(error),
    () => connection.healthy(),
  );
  view.show({ kind: "job", jobId, record: null });
}

main();
