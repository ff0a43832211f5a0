// Node publish and consume rates on one Redis (REDIS_URL), beside plain
// ioredis doing the same writes (the baseline, as `eventbus bench` puts the
// Go bus beside plain go-redis): N events published one await at a time, then
// in batches of 100 (each also with dedupWindowMs -1, the plain-XADD write, to
// show what deduplication by id costs), then the batch stream's N entries consumed by one consumer
// (batches of 100, a handler that does nothing). Each line: events/s and this process's CPU time per
// event (user+system), which a busy machine disturbs less than the rate.
// ROUNDS rounds (default 3), the variants in the same order each round.
import { Redis } from "ioredis";
import { randomUUID } from "node:crypto";
import { Publisher, Consumer } from "../dist/esm/index.js";
const BASE = Number(process.env.N ?? 20000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const r = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const prefix = `tsbench:${randomUUID()}:`;
const payload = { photoId: "p-1", size: 1024, owner: "u-1" };

async function measure(name, n, fn) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const s = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { name, events_per_s: Math.round(n / s), cpu_ns_per_event: Math.round(((c.user + c.system) * 1000) / n) };
}

const all = [];
for (let round = 0; round <= ROUNDS; round++) { // round 0 warms the JIT up and is not reported
  const rows = { push: (x) => { if (round > 0) all.push(x); } };
  const N = round === 0 ? Math.min(BASE, 2000) : BASE;
  const p = new Publisher(r, { serviceName: "bench", streamPrefix: prefix, maxLen: -1 });
  await p.publish("bench.one", { data: payload }); // registered: later publishes take the one-command path
  const nd = new Publisher(r, { serviceName: "bench", streamPrefix: prefix, maxLen: -1, dedupWindowMs: -1 });
  await nd.publish("bench.nodedup", { data: payload });
  const data = JSON.stringify(payload);
  rows.push(await measure("publish/ioredis-xadd", N, async () => {
    for (let i = 0; i < N; i++) {
      await r.xadd(prefix + "bench.plain", "*", "id", randomUUID(), "type", "bench.plain", "source", "bench", "specversion", "1.0",
        "time", new Date().toISOString(), "datacontenttype", "application/json", "data", data);
    }
  }));
  rows.push(await measure("publish/node", N, async () => { for (let i = 0; i < N; i++) await p.publish("bench.one", { data: payload }); }));
  rows.push(await measure("publish/node-nodedup", N, async () => { for (let i = 0; i < N; i++) await nd.publish("bench.nodedup", { data: payload }); }));
  rows.push(await measure("publish/ioredis-pipeline100", N, async () => {
    for (let i = 0; i < N; i += 100) {
      const pipe = r.pipeline();
      for (let j = 0; j < 100; j++) {
        pipe.xadd(prefix + "bench.plain", "*", "id", randomUUID(), "type", "bench.plain", "source", "bench", "specversion", "1.0",
          "time", new Date().toISOString(), "datacontenttype", "application/json", "data", data);
      }
      await pipe.exec();
    }
  }));
  rows.push(await measure("publish/node100", N, async () => {
    for (let i = 0; i < N; i += 100) await p.publishBatch("bench.batch", Array.from({ length: 100 }, () => ({ data: payload })));
  }));
  rows.push(await measure("publish/node100-nodedup", N, async () => {
    for (let i = 0; i < N; i += 100) await nd.publishBatch("bench.batch-nodedup", Array.from({ length: 100 }, () => ({ data: payload })));
  }));
  // Prefilled (the N events of publish/node100), as the Go end-to-end scenario.
  rows.push(await measure("consume/node", N, () => new Promise(async (res) => {
    let got = 0;
    const c = new Consumer(r, { group: `g${round}`, streamPrefix: prefix, blockMs: 100, batchSize: 100 });
    c.subscribe("bench.batch", () => { if (++got === N) setImmediate(async () => { await c.close(); res(); }); });
    await c.start();
  })));
  const ks = await r.keys(prefix + "*");
  if (ks.length) await r.del(...ks);
}
const by = {};
for (const row of all) (by[row.name] ??= []).push(row);
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`node ${process.version}, ${BASE} events, ${ROUNDS} rounds, medians (per round in brackets)`);
for (const [name, rs] of Object.entries(by)) {
  console.log(`${name.padEnd(30)} ${String(median(rs.map((x) => x.events_per_s))).padStart(8)} ev/s  ${String(median(rs.map((x) => x.cpu_ns_per_event))).padStart(7)} cpu-ns/ev  [${rs.map((x) => x.events_per_s).join(" ")}]`);
}
r.disconnect();
