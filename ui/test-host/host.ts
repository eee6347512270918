// A minimal MCP Apps host for pow-mcp's browser tests: a real MCP client to the live server,
// the view of a tool's `_meta.ui.resourceUri` in a sandboxed frame, and the official
// AppBridge between them. The tests drive it through `window.powHost`.

import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
  getToolUiResourceUri,
} from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const UI_EXTENSION = "io.modelcontextprotocol/ui";
// What the frame may load: nothing from the network (the view declares no CSP domains).
const FRAME_CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'none'";

interface Shown {
  resourceUri: string;
  csp: unknown;
  result: unknown;
}

let client: Client | null = null;
const state = document.getElementById("state")!;

async function connect(token: string | null, withUi: boolean): Promise<Client> {
  const extensions: Record<string, { mimeTypes: string[] }> = {};
  if (withUi) extensions[UI_EXTENSION] = { mimeTypes: [RESOURCE_MIME_TYPE] };
  const next = new Client(
    { name: "pow-mcp test host", version: "1" },
    { capabilities: { extensions } },
  );
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  await next.connect(
    new StreamableHTTPClientTransport(new URL("/mcp", location.origin), {
      requestInit: { headers },
    }),
  );
  client = next;
  return next;
}

async function uiResource(c: Client, uri: string): Promise<{ html: string; csp: unknown }> {
  const { contents } = await c.readResource({ uri });
  const content = contents[0] as {
    mimeType?: string;
    text?: string;
    _meta?: { ui?: { csp?: unknown } };
  };
  if (
    contents.length !== 1 ||
    content.mimeType !== RESOURCE_MIME_TYPE ||
    typeof content.text !== "string"
  ) {
    throw new Error(`unexpected UI resource ${uri}: ${JSON.stringify(contents).slice(0, 200)}`);
  }
  return { html: content.text, csp: content._meta?.ui?.csp ?? null };
}

function withCsp(html: string): string {
  return html.replace(
    /<head>/i,
    `<head><meta http-equiv="Content-Security-Policy" content="${FRAME_CSP}">`,
  );
}

/** Call `tool` as a model would and show its UI, as a host does; resolves once shown. */
async function show(
  tool: string,
  args: Record<string, unknown>,
  theme: "light" | "dark",
): Promise<Shown> {
  const c = client!;
  const { tools } = await c.listTools();
  const found = tools.find((t) => t.name === tool);
  const resourceUri = found ? getToolUiResourceUri(found) : undefined;
  if (!resourceUri) throw new Error(`tool ${tool} has no _meta.ui.resourceUri`);
  const { html, csp } = await uiResource(c, resourceUri);

  const frame = document.createElement("iframe");
  frame.setAttribute("sandbox", "allow-scripts");
  frame.dataset["tool"] = tool;
  document.getElementById("frames")!.append(frame);
  const capabilities = c.getServerCapabilities();
  const bridge = new AppBridge(
    c,
    { name: "pow-mcp test host", version: "1" },
    { serverTools: capabilities?.tools, serverResources: capabilities?.resources },
    { hostContext: { theme, displayMode: "inline" } },
  );
  bridge.onsizechange = ({ height }) => {
    if (height !== undefined) frame.style.height = `${height}px`;
  };
  const initialized = new Promise<void>((resolve) => (bridge.oninitialized = () => resolve()));
  await bridge.connect(new PostMessageTransport(frame.contentWindow!, frame.contentWindow!));
  frame.srcdoc = withCsp(html);
  await initialized;
  await bridge.sendToolInput({ arguments: args });
  const result = await c.callTool({ name: tool, arguments: args });
  await bridge.sendToolResult(result as Parameters<AppBridge["sendToolResult"]>[0]);
  frame.scrollIntoView(); // as a chat scrolls to its newest message
  state.textContent = "shown";
  return { resourceUri, csp, result };
}

async function toolMeta(): Promise<Record<string, unknown>> {
  const { tools } = await client!.listTools();
  return Object.fromEntries(tools.map((t) => [t.name, t._meta ?? null]));
}

declare global {
  interface Window {
    powHost: {
      connect(token: string | null, withUi: boolean): Promise<void>;
      show(tool: string, args: Record<string, unknown>, theme: "light" | "dark"): Promise<Shown>;
      toolMeta(): Promise<Record<string, unknown>>;
    };
  }
}

window.powHost = {
  connect: async (token, withUi) => {
    await connect(token, withUi);
    state.textContent = "connected";
  },
  show,
  toolMeta,
};
document.body.dataset["theme"] = new URLSearchParams(location.search).get("theme") ?? "light";
state.textContent = "ready";
