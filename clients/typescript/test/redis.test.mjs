// Publisher and Consumer against real Redis (REDIS_URL, default 127.0.0.1:6379), each test under its own prefix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { Publisher, Consumer, BrowserClient, backoff, toCloudEvent } from "../dist/esm/index.js";

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

async function client(t) {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try { await r.connect(); } catch (e) { throw new Error(`Redis not reachable at ${url} (start one: scripts/with-redis.sh): ${e}`); }
  const prefix = `tstest:${randomUUID()}:`;
  t.after(async () => { const ks = await r.keys(prefix + "*"); if (ks.length) await r.del(...ks); r.disconnect(); });
  return { r, prefix };
}

test("publish writes fields, trims, registers once, copies addressed events to $push", async (t) => {
  const { r, prefix } = await client(t);
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix, maxLen: 10 });
  const res = await p.publish("photo.uploaded", { data: { a: 1 }, subject: "p-1", room: "r1", attributes: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } });
  const [[sid, flat]] = await r.xrange(prefix + "photo.uploaded", "-", "+");
  assert.equal(sid, res.streamId);
  const f = Object.fromEntries(flat.reduce((a, x, i) => (i % 2 ? a[a.length - 1].push(x) : a.push([x]), a), []));
  assert.equal(f.id, res.id); assert.equal(f.type, "photo.uploaded"); assert.equal(f.source, "node-test");
  assert.equal(f.specversion, "1.0"); assert.equal(f.datacontenttype, "application/json"); assert.equal(f.data, '{"a":1}');
  assert.equal(f.room, "r1"); assert.ok(!Number.isNaN(Date.parse(f.time)));
  assert.deepEqual(await r.smembers(prefix + "$types"), ["photo.uploaded"]);
  assert.equal(await r.xlen(prefix + "$push"), 1);
  for (let i = 0; i < 300; i++) await p.publish("photo.uploaded", { data: i });
  assert.ok((await r.xlen(prefix + "photo.uploaded")) < 301, "MAXLEN ~ trims");
  assert.equal(await r.xlen(prefix + "$push"), 1, "unaddressed events are not copied");
  await assert.rejects(p.publish("Bad.Type", {}), /invalid event type/);
  await assert.rejects(p.publish("x", { data: Buffer.from("{not json"), datacontenttype: "application/json" }), /not valid JSON/);
});

test("consumer delivers by pattern, acks, dead-letters malformed entries, claims idle ones", async (t) => {
  const { r, prefix } = await client(t);
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix });
  await p.publish("photo.uploaded", { data: { n: 1 } });
  await r.xadd(prefix + "photo.uploaded", "*", "garbage", "1");
  // An entry read by a consumer that died: pending, idle.
  await r.xgroup("CREATE", prefix + "photo.uploaded", "g", "0", "MKSTREAM");
  const got = [];
  const done = new Promise((res) => {
    const c = new Consumer(r, { group: "g", streamPrefix: prefix, blockMs: 100, claimMinIdleMs: 300 });
    c.subscribe("photo.>", (ev) => { got.push(ev); if (got.length === 2) res(c); });
    t.after(() => c.close());
    // the dead consumer takes the first batch and never acks it
    r.xreadgroup("GROUP", "g", "dead", "COUNT", 1, "STREAMS", prefix + "photo.uploaded", ">").then(async () => {
      await p.publish("photo.processing.done", { data: { n: 2 } });
      await c.start();
    });
  });
  const c = await done;
  assert.deepEqual(got.map((e) => e.data.n).sort(), [1, 2]);
  assert.ok(c.stats.claimed >= 1, "the dead consumer's entry was claimed");
  assert.equal(got.find((e) => e.data.n === 1).delivery, 2);
  const dlq = await r.xrange(prefix + "$dlq", "-", "+");
  assert.equal(dlq.length, 1);
  const f = dlq[0][1];
  for (const k of ["dlq_reason", "dlq_group", "dlq_topic", "dlq_stream_id", "dlq_delivery", "dlq_time", "dlq_malformed"]) assert.ok(f.includes(k), k);
  assert.equal((await r.xpending(prefix + "photo.uploaded", "g"))[0], 0, "everything acked");
  assert.equal((await c.health()).healthy, true);
});

test("browser client parses SSE blocks: typed handlers, gap, data_base64, last id", () => {
  const seen = [], gaps = [];
  const b = new BrowserClient({ url: "http://x", onGap: (g) => gaps.push(g) });
  b.on("photo.*", (e) => seen.push(e));
  b.dispatch('id: 1-0\nevent: photo.uploaded\ndata: {"id":"a","type":"photo.uploaded","source":"s","specversion":"1.0","data":{"x":1}}');
  b.dispatch('id: 2-0\nevent: photo.raw\ndata: {"id":"b","type":"photo.raw","data_base64":"AAE="}');
  b.dispatch('id: 3-0\nevent: video.x\ndata: {"id":"c","type":"video.x"}');
  b.dispatch('event: gap\ndata: {"lastEventId":"0-1","since":"2026-01-01T00:00:00Z","message":"lost"}');
  assert.deepEqual(seen.map((e) => e.id), ["a", "b"]);
  assert.deepEqual(seen[0].data, { x: 1 });
  assert.deepEqual([...seen[1].data], [0, 1]);
  assert.equal(seen[1].lastEventId, "2-0");
  assert.equal(gaps[0].message, "lost");
  for (let i = 0; i < 20; i++) { const d = backoff(i, 100, 1000); assert.ok(d >= 100 && d <= 1000); }
});

test("a pattern consumer finds a new type through the registry notification, not the resync", async (t) => {
  const { r, prefix } = await client(t);
  // A resync and a read block far longer than the test's bound: only the
  // notification (and CLIENT UNBLOCK of the blocked read) can deliver in time.
  const c = new Consumer(r, { group: "g", streamPrefix: prefix, blockMs: 30000, resyncMs: 600000 });
  const got = [];
  const both = new Promise((res) => c.subscribe("photo.>", (ev) => { got.push(ev.type); if (got.length === 2) res(); }));
  t.after(() => c.close());
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix });
  await p.publish("photo.uploaded", { data: { n: 1 } }); // known at start
  await c.start();
  await p.publish("photo.processing.done", { data: { n: 2 } }); // first published after start
  let timer;
  const bound = new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`new type not discovered within 10s (got ${got})`)), 10000); });
  await Promise.race([both, bound]).finally(() => clearTimeout(timer));
  assert.deepEqual(got.sort(), ["photo.processing.done", "photo.uploaded"]);
  assert.equal((await c.health()).streams, 2);
});

test("binary data arrives byte for byte; a handler that keeps failing is dead-lettered at maxDeliveries", async (t) => {
  const { r, prefix } = await client(t);
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix });
  const bytes = Uint8Array.from([0, 1, 2, 0xc3, 0x28, 255]); // not UTF-8
  const bin = await p.publish("blob.stored", { data: bytes, datacontenttype: "application/octet-stream" });
  const bad = await p.publish("blob.stored", { data: { poison: true } });
  const got = [];
  const errors = [];
  const c = new Consumer(r, { group: "g", streamPrefix: prefix, blockMs: 50, claimMinIdleMs: 150, maxDeliveries: 2, onError: (e) => errors.push(e) });
  t.after(() => c.close());
  const dead = new Promise((res) => {
    c.subscribe("blob.stored", (ev) => {
      if (ev.data?.poison) throw new Error(`poison ${ev.delivery}`);
      got.push(ev);
    });
    const poll = setInterval(async () => { if ((await r.xlen(prefix + "$dlq")) > 0) { clearInterval(poll); res(); } }, 50);
  });
  await c.start();
  await dead;
  assert.equal(got.length, 1);
  assert.equal(got[0].id, bin.id);
  assert.deepEqual([...got[0].raw], [...bytes]);
  const [[, flat]] = await r.xrange(prefix + "$dlq", "-", "+");
  const f = Object.fromEntries(flat.reduce((a, x, i) => (i % 2 ? a[a.length - 1].push(x) : a.push([x]), a), []));
  assert.equal(f.id, bad.id);
  assert.equal(f.type, "blob.stored");
  assert.equal(f.data, '{"poison":true}');
  assert.equal(f.dlq_delivery, "2");
  assert.match(f.dlq_reason, /handler failed on delivery 2 \(maxDeliveries 2\): poison 2/);
  assert.equal(f.dlq_malformed, undefined);
  assert.equal(errors.length, 2);
  assert.equal((await r.xpending(prefix + "blob.stored", "g"))[0], 0, "acked once dead-lettered");
});

test("deliverAt: scheduled, not written to the stream; beyond maxDelayMs nothing is written; ingress sends deliverat", async (t) => {
  const { r, prefix } = await client(t);
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix, maxDelayMs: 60000 });
  const at = new Date(Date.now() + 30000);
  const [later, now] = await p.publishBatch("photo.reminder", [{ data: { n: 1 }, deliverAt: at }, { data: { n: 2 } }]);
  assert.equal(later.streamId, "");
  assert.equal(later.scheduledFor.getTime(), at.getTime());
  assert.notEqual(now.streamId, "");
  const entries = await r.xrange(prefix + "photo.reminder", "-", "+");
  assert.deepEqual(entries.map(([, f]) => f[f.indexOf("id") + 1]), [now.id]);
  assert.equal(Number(await r.zscore(`{${prefix}photo.reminder}:scheduled`, later.id)), at.getTime());
  assert.deepEqual(await r.smembers(prefix + "$scheduled"), [`{${prefix}photo.reminder}:scheduled`]);
  await assert.rejects(p.publish("photo.reminder", { deliverAt: Date.now() + 120000 }), /beyond the scheduling horizon/);
  assert.equal(await r.zcard(`{${prefix}photo.reminder}:scheduled`), 1, "nothing more scheduled");
  assert.equal(toCloudEvent("photo.reminder", { deliverAt: at }, "/s").deliverat, at.toISOString());
});
