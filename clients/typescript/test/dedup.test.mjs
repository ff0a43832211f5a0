// Publisher deduplication by event id (bus/dedup.go's script and keys), against real Redis.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { Publisher, DefaultDedupWindowMs } from "../dist/esm/index.js";

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

async function client(t) {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try { await r.connect(); } catch (e) { throw new Error(`Redis not reachable at ${url} (start one: scripts/with-redis.sh): ${e}`); }
  const prefix = `tsdedup:${randomUUID()}:`;
  t.after(async () => { const ks = await r.keys(prefix + "*"); if (ks.length) await r.del(...ks); r.disconnect(); });
  return { r, prefix };
}

test("the same id published twice writes one entry; the repeat reports the first entry", async (t) => {
  const { r, prefix } = await client(t);
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix });
  const id = randomUUID();
  const first = await p.publish("photo.uploaded", { id, data: { n: 1 } }); // registers: the pipeline path
  const again = await p.publish("photo.uploaded", { id, data: { n: 1 } }); // the one-command path
  assert.equal(first.duplicate, undefined);
  assert.equal(again.duplicate, true);
  assert.equal(again.streamId, first.streamId);
  assert.equal(await r.xlen(prefix + "photo.uploaded"), 1);
  // The key bus.Config.DedupKey names, holding the entry id, expiring after the window.
  const key = `${prefix}$dedup:{${prefix}photo.uploaded}:${id}`;
  assert.equal(await r.get(key), first.streamId);
  const ttl = await r.pttl(key);
  assert.ok(ttl > 0 && ttl <= DefaultDedupWindowMs, `PTTL ${ttl}`);
  assert.deepEqual(p.stats, { published: 1, errors: 0, duplicates: 1 });
});

test("a batch: repeats inside it and of earlier ids are dropped; an addressed repeat writes no second push copy", async (t) => {
  const { r, prefix } = await client(t);
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix });
  const a = randomUUID(), b = randomUUID();
  await p.publish("photo.shared", { id: a, data: 1, room: "r1" });
  const res = await p.publishBatch("photo.shared", [{ id: a, data: 1, room: "r1" }, { id: b, data: 2, room: "r1" }, { id: b, data: 2, room: "r1" }]);
  assert.deepEqual(res.map((x) => !!x.duplicate), [true, false, true]);
  assert.equal(res[2].streamId, res[1].streamId);
  assert.equal(await r.xlen(prefix + "photo.shared"), 2);
  assert.equal(await r.xlen(prefix + "$push"), 2, "one push copy per id");
  assert.ok(await r.exists(`${prefix}$dedup:{${prefix}$push}:photo.shared:${b}`), "the push copy's key names the type");
  // The same id under another type is another event.
  const other = await p.publish("photo.deleted", { id: a, data: 1 });
  assert.equal(other.duplicate, undefined);
});

test("dedupWindowMs -1 writes every publish; a short window forgets", async (t) => {
  const { r, prefix } = await client(t);
  const off = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix, dedupWindowMs: -1 });
  const id = randomUUID();
  await off.publish("photo.uploaded", { id, data: 1 });
  const again = await off.publish("photo.uploaded", { id, data: 1 });
  assert.equal(again.duplicate, undefined);
  assert.equal(await r.xlen(prefix + "photo.uploaded"), 2);
  assert.equal((await r.keys(prefix + "$dedup:*")).length, 0, "no dedup key written");

  const short = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix, dedupWindowMs: 50 });
  const id2 = randomUUID();
  await short.publish("photo.uploaded", { id: id2, data: 1 });
  const key = `${prefix}$dedup:{${prefix}photo.uploaded}:${id2}`;
  while (await r.exists(key)) await new Promise((res) => setTimeout(res, 20));
  const later = await short.publish("photo.uploaded", { id: id2, data: 1 });
  assert.equal(later.duplicate, undefined, "written again once the window has passed");
  assert.equal(await r.xlen(prefix + "photo.uploaded"), 4);
  assert.throws(() => new Publisher(r, { serviceName: "x", dedupWindowMs: -2 }), /dedupWindowMs/);
  assert.throws(() => new Publisher(r, { serviceName: "x", dedupWindowMs: 1.5 }), /dedupWindowMs/);
});

// SCRIPT FLUSH empties every script of a server, so this one runs on a Redis
// of its own (redis-server on a unix socket, no TCP port; REDIS_SERVER names
// another binary), never on the shared one.
test("a server that does not know the script (restart, failover, SCRIPT FLUSH): EVAL loads it, nothing is lost", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "tsdedup-"));
  const sock = join(dir, "redis.sock");
  const srv = spawn(process.env.REDIS_SERVER ?? "redis-server", ["--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir], { stdio: "ignore" });
  const exited = new Promise((res) => srv.on("exit", res));
  srv.on("error", (e) => { throw new Error(`redis-server could not start (apt-get install redis-server): ${e}`); });
  t.after(async () => { srv.kill(); await exited; rmSync(dir, { recursive: true, force: true }); });
  while (!existsSync(sock)) await new Promise((res) => setTimeout(res, 20));
  const r = new Redis({ path: sock, maxRetriesPerRequest: 1 });
  t.after(() => r.disconnect());
  const p = new Publisher(r, { serviceName: "node-test" });
  await r.script("FLUSH");
  const a = await p.publish("photo.uploaded", { data: 1, room: "r1" }); // the pipeline (first publish, push copy)
  await r.script("FLUSH");
  const b = await p.publish("photo.uploaded", { data: 2 }); // the one-command path
  await r.script("FLUSH");
  const c = await p.publish("photo.uploaded", { id: b.id, data: 2 });
  assert.ok(a.streamId && b.streamId && !a.duplicate && !b.duplicate);
  assert.equal(c.duplicate, true, "still deduplicated after the flush");
  assert.equal(c.streamId, b.streamId);
  assert.equal(await r.xlen("events:photo.uploaded"), 2);
  assert.equal(await r.xlen("events:$push"), 1);
});
