// Builds the job view into single HTML files (script and style inline, nothing loaded from
// the network) and the licences of the third-party code they bundle:
//   pow_mcp/server/ui/job-view.html      the MCP App (ui://pow-mcp/job)
//   pow_mcp/server/ui/jobs-page.html     the browser pages /jobs and /jobs/{job_id}
//   pow_mcp/server/ui/THIRD_PARTY_LICENSES.md
//   tests/browser/host.html      the tests' minimal MCP Apps host (AppBridge + MCP client)
// The output is deterministic: `make ui-check` rebuilds and compares with what is committed.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..");
const packaged = join(repo, "pow_mcp", "server", "ui");
const LICENSES = "THIRD_PARTY_LICENSES.md";
const NOTICE = `<!-- Built from ui/ by \`make ui\`. It bundles third-party code: see ${LICENSES} beside pow-mcp's pow_mcp/server/ui/. -->`;

const targets = [
  { entry: "src/app.ts", template: "src/app.html", out: join(packaged, "job-view.html") },
  {
    entry: "src/page.ts",
    template: "src/page.html",
    out: join(packaged, "jobs-page.html"),
    csp: true,
  },
  {
    entry: "test-host/host.ts",
    template: "test-host/host.html",
    out: join(repo, "tests", "browser", "host.html"),
  },
];

// zod exports all its ~50 message locales through one namespace, which no bundler can trim;
// the view only ever shows English messages (pow-mcp's own), so the rest stay out (-250 KiB).
const englishOnly = {
  name: "zod-english-only",
  setup(b) {
    b.onResolve({ filter: /\/locales\/index\.js$/ }, (args) =>
      args.importer.includes("node_modules/zod/")
        ? { path: join(dirname(args.importer), "../locales/en.js"), namespace: "zod-en" }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "zod-en" }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(args.path)};`,
      resolveDir: dirname(args.path),
    }));
  },
};

const sha256 = (text) => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

async function bundle({ entry }) {
  const result = await build({
    entryPoints: [join(here, entry)],
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    platform: "browser",
    write: false,
    outdir: "out",
    metafile: true,
    legalComments: "none", // the licences go whole into THIRD_PARTY_LICENSES.md
    plugins: [englishOnly],
    logLevel: "warning",
  });
  const text = (ext) => result.outputFiles.find((f) => f.path.endsWith(ext))?.text ?? "";
  // Inline: "</script" or "<!--" inside the code would end or confuse the element.
  const js = text(".js").replaceAll("</script", "<\\/script").replaceAll("<!--", "<\\!--");
  return { js, css: text(".css"), inputs: Object.keys(result.metafile.inputs) };
}

function page(target, { js, css }) {
  const template = readFileSync(join(here, target.template), "utf8");
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(js)}`,
    `style-src ${sha256(css)}`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");
  // Replaced by functions: a replacement string would read "$&" and "$'" in the code as patterns.
  return template
    .replace("<!-- NOTICE -->", () => NOTICE)
    .replace("<!-- CSP -->", () =>
      target.csp ? `<meta http-equiv="Content-Security-Policy" content="${csp}">` : "",
    )
    .replace("<!-- STYLE -->", () => (css ? `<style>${css}</style>` : ""))
    .replace("<!-- SCRIPT -->", () => `<script type="module">${js}</script>`);
}

/** Each bundled package's name, version, licence and licence text. */
function licences(inputs) {
  const packages = new Map();
  for (const input of inputs) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) packages.set(match[1], join(here, "node_modules", match[1]));
  }
  const sections = [...packages.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, dir]) => {
      const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      const file = ["LICENSE", "LICENSE.md", "LICENSE.txt", "license"]
        .map((f) => join(dir, f))
        .find(existsSync);
      const text = file
        ? readFileSync(file, "utf8").trim()
        : `(no licence file; package.json says ${meta.license})`;
      return `## ${name} ${meta.version}\n\nLicence: ${meta.license}\n\n\`\`\`text\n${text}\n\`\`\`\n`;
    });
  return (
    "# Third-party code in pow-mcp's job view\n\n" +
    "`job-view.html` and `jobs-page.html` in this folder bundle the packages below " +
    "(built from `ui/` with esbuild). Their licences follow.\n\n" +
    sections.join("\n")
  );
}

const inputs = new Set();
for (const target of targets) {
  const built = await bundle(target);
  if (!target.out.startsWith(join(repo, "tests"))) built.inputs.forEach((i) => inputs.add(i));
  mkdirSync(dirname(target.out), { recursive: true });
  const html = page(target, built);
  writeFileSync(target.out, html);
  console.log(`${relative(repo, target.out)}: ${(Buffer.byteLength(html) / 1024).toFixed(0)} KiB`);
}
writeFileSync(join(packaged, LICENSES), licences([...inputs]));
console.log(`${relative(repo, join(packaged, LICENSES))}`);
