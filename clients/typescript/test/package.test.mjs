// The package as a user gets it: its exports resolve for import and require
// (ESM and CJS builds), and `npm pack` ships the builds and nothing else.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";

const require = createRequire(import.meta.url);

test("import and require resolve the ESM and CJS builds through the exports map", async () => {
  const esm = await import("@shared-infra/eventbus");
  const cjs = require("@shared-infra/eventbus");
  for (const name of ["Publisher", "Consumer", "IngressPublisher", "IngressError", "BrowserClient", "match", "validateType"]) {
    assert.equal(typeof esm[name], "function", `ESM ${name}`);
    assert.equal(typeof cjs[name], "function", `CJS ${name}`);
  }
  assert.notEqual(esm.Publisher, cjs.Publisher, "two builds");
  assert.match(require.resolve("@shared-infra/eventbus"), /dist\/cjs\/index\.js$/);
  const br = await import("@shared-infra/eventbus/browser");
  assert.equal(typeof br.BrowserClient, "function");
  assert.equal(typeof require("@shared-infra/eventbus/browser").BrowserClient, "function");
  assert.equal(cjs.match("photo.>", "photo.processing.done"), true);
});

test("npm pack ships the ESM and CJS builds with their types, and no sources or tests", () => {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: new URL("..", import.meta.url), encoding: "utf8" });
  const files = JSON.parse(out)[0].files.map((f) => f.path);
  for (const f of ["package.json", "dist/esm/index.js", "dist/esm/index.d.ts", "dist/esm/browser.js", "dist/cjs/index.js", "dist/cjs/index.d.ts", "dist/cjs/package.json", "dist/cjs/browser.js"]) {
    assert.ok(files.includes(f), `${f} in ${files}`);
  }
  assert.deepEqual(files.filter((f) => /^(src|test|scripts)\/|_test\.go$|node_modules/.test(f)), []);
});
