// The MCP App (ui://pow-mcp/job): the host hands it a tool result about a job or a batch, and
// it refreshes through the host by calling pow-mcp's own tools.

import {
  App,
  applyDocumentTheme,
  applyHostFonts,
  applyHostStyleVariables,
  type McpUiHostContext,
} from "@modelcontextprotocol/ext-apps";

import { JobView } from "./view";
import "./style.css";

const root = document.getElementById("root")!;
const app = new App({ name: "pow-mcp job view", version: "1" }, {}, { autoResize: true });
const view = new JobView(
  root,
  { callTool: (name, args) => app.callServerTool({ name, arguments: args }) },
  (error) => view.say(`The host could not reach pow-mcp (${String(error)}); trying again…`),
);
view.say("Waiting for the job…");

function applyContext(context: McpUiHostContext | undefined): void {
  if (context?.theme) applyDocumentTheme(context.theme);
  if (context?.styles?.variables) applyHostStyleVariables(context.styles.variables);
  if (context?.styles?.css?.fonts) applyHostFonts(context.styles.css.fonts);
}

app.ontoolinput = ({ arguments: args }) => {
  const jobId = args?.["job_id"];
  view.say(typeof jobId === "string" ? `Loading job ${jobId}…` : "Starting…");
};
app.ontoolresult = (result) => view.showResult(result);
app.ontoolcancelled = ({ reason }) =>
  view.say(`The call was cancelled${reason ? `: ${reason}` : ""}.`);
app.onhostcontextchanged = applyContext;
app.onteardown = async () => ({});

void app.connect().then(() => applyContext(app.getHostContext()));
