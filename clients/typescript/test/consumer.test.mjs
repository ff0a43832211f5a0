// Consumer handler timeout, heartbeat and dead-consumer claims (bus/heartbeat.go's keys), against real Redis.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { Publisher, Consumer, HandlerTimeoutError, DefaultHandlerTimeoutMs } from "../dist/esm/index.js";

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

async function client(t) {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try { await r.connect(); } catch (e) { throw new Error(`Redis not reachable at ${url} (start one: scripts/with-redis.sh): ${e}`); }
  const prefix = `tsconsumer:${randomUUID()}:`;
  t.after(async () => { const ks = await r.keys(prefix + "*"); if (ks.length) await r.del(...ks); r.disconnect(); });
  return { r, prefix };
}

const fields = (flat) => Object.fromEntries(flat.reduce((a, x, i) => (i % 2 ? a[a.length - 1].push(x) : a.push([x]), a), []));
const until = async (f) => { while (!(await f())) await new Promise((res) => setTimeout(res, 20)); };

test("a handler past handlerTimeoutMs fails: its signal is aborted, the event redelivered, then dead-lettered at maxDeliveries", async (t) => {
  const { r, prefix } = await client(t);
  assert.equal(DefaultHandlerTimeoutMs, 30000, "router.DefaultHandlerTimeout");
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix });
  const slow = await p.publish("job.run", { data: { slow: true } });
  const fast = await p.publish("job.run", { data: { slow: false } });
  const aborted = [], errors = [], handled = [];
  const c = new Consumer(r, { group: "g", streamPrefix: prefix, blockMs: 50, claimMinIdleMs: 300, maxDeliveries: 2, handlerTimeoutMs: 100, onError: (e) => errors.push(e) });
  t.after(() => c.close());
  c.subscribe("job.run", async (ev, signal) => {
    if (!ev.data.slow) { handled.push(ev.id); return; }
    // Ignores nothing: waits for its deadline's abort, then never finishes.
    await new Promise((res) => signal.addEventListener("abort", () => { aborted.push(signal.reason); res(); }));
    await new Promise(() => {});
  });
  await c.start();
  await until(async () => (await r.xlen(prefix + "$dlq")) > 0);
  assert.deepEqual(handled, [fast.id], "the loop goes on past a timed-out handler");
  assert.equal(aborted.length, 2, "one abort per delivery");
  assert.ok(aborted.every((e) => e instanceof HandlerTimeoutError && e.timeoutMs === 100));
  assert.equal(errors.filter((e) => e instanceof HandlerTimeoutError).length, 2);
  const [[, flat]] = await r.xrange(prefix + "$dlq", "-", "+");
  const f = fields(flat);
  assert.equal(f.id, slow.id);
  assert.equal(f.dlq_delivery, "2");
  assert.match(f.dlq_reason, /handler failed on delivery 2 \(maxDeliveries 2\): handler timed out after 100ms/);
  assert.equal(c.stats.timedOut, 2);
  await until(async () => (await r.xpending(prefix + "job.run", "g"))[0] === 0);
});

test("the heartbeat key and consumer set are bus/heartbeat.go's; close deletes the key", async (t) => {
  const { r, prefix } = await client(t);
  const c = new Consumer(r, { group: "g", consumer: "node-1", streamPrefix: prefix, blockMs: 50, heartbeatTtlMs: 400 });
  c.subscribe("job.run", () => {});
  await c.start();
  const key = `${prefix}$hb:g:node-1`;
  const ttl = await r.pttl(key);
  assert.ok(ttl > 0 && ttl <= 400, `PTTL ${ttl}`);
  assert.deepEqual(await r.smembers(`${prefix}$consumers:g`), ["node-1"]);
  // Refreshed every ttl/4: still there after several ttls.
  for (let i = 0; i < 3; i++) {
    await new Promise((res) => setTimeout(res, 400));
    assert.equal(await r.exists(key), 1, "refreshed");
  }
  await c.close();
  assert.equal(await r.exists(key), 0, "deleted on close");
  const off = new Consumer(r, { group: "g2", consumer: "node-2", streamPrefix: prefix, blockMs: 50, heartbeatTtlMs: -1 });
  off.subscribe("job.run", () => {});
  await off.start();
  t.after(() => off.close());
  assert.equal(await r.exists(`${prefix}$hb:g2:node-2`), 0, "-1: no heartbeat");
  assert.throws(() => new Consumer(r, { group: "g", heartbeatTtlMs: 2 }), /heartbeatTtlMs/);
  assert.throws(() => new Consumer(r, { group: "g", handlerTimeoutMs: -5 }), /handlerTimeoutMs/);
});

test("entries of a consumer whose heartbeat is gone are claimed at once; a live one's are not", async (t) => {
  const { r, prefix } = await client(t);
  const p = new Publisher(r, { serviceName: "node-test", streamPrefix: prefix });
  const key = prefix + "job.run";
  await r.xgroup("CREATE", key, "g", "0", "MKSTREAM");
  const set = `${prefix}$consumers:g`;
  // "alive" keeps its heartbeat and holds one entry; "dead" held two and its heartbeat expired.
  await p.publish("job.run", { data: { who: "alive" } });
  await r.set(`${prefix}$hb:g:alive`, "1", "PX", 60000);
  await r.sadd(set, "alive");
  await r.xreadgroup("GROUP", "g", "alive", "COUNT", 1, "STREAMS", key, ">");
  await p.publishBatch("job.run", [{ data: { who: "dead" } }, { data: { who: "dead" } }]);
  await r.sadd(set, "dead");
  await r.xreadgroup("GROUP", "g", "dead", "COUNT", 2, "STREAMS", key, ">");

  const got = [];
  // claimMinIdleMs far off: only the missing heartbeat can explain a claim.
  const c = new Consumer(r, { group: "g", consumer: "node-1", streamPrefix: prefix, blockMs: 50, claimMinIdleMs: 600000, heartbeatTtlMs: 400 });
  t.after(() => c.close());
  const two = new Promise((res) => c.subscribe("job.run", (ev) => { got.push(ev); if (got.length === 2) res(); }));
  await c.start();
  await two;
  assert.deepEqual(got.map((e) => [e.data.who, e.delivery]), [["dead", 2], ["dead", 2]]);
  assert.equal(c.stats.claimed, 2);
  await until(async () => !(await r.sismember(set, "dead")));
  assert.deepEqual((await r.smembers(set)).sort(), ["alive", "node-1"], "a dead name that holds nothing leaves the set");
  const pend = await r.xpending(key, "g", "-", "+", 10);
  assert.deepEqual(pend.map((x) => x[1]), ["alive"], "the live consumer's entry stays its own");
});
