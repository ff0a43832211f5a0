// The shared vectors of bus/testdata/topic_vectors.json, as the Go test reads them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { match, isValidType, isValidPattern } from "../dist/esm/index.js";

const v = JSON.parse(readFileSync(new URL("../../../bus/testdata/topic_vectors.json", import.meta.url), "utf8"));

test("match agrees with bus.Match on the shared vectors", () => {
  assert.ok(v.match.length > 0);
  for (const c of v.match) assert.equal(match(c.pattern, c.type), c.match, `match(${c.pattern}, ${c.type})`);
});
test("type and pattern validation agree with the Go rules", () => {
  for (const c of v.types) assert.equal(isValidType(c.type), c.valid, `type ${c.type}`);
  for (const c of v.patterns) assert.equal(isValidPattern(c.pattern), c.valid, `pattern ${c.pattern}`);
});
