// Node publish and consume rates on one Redis (REDIS_URL): N events published
// one await at a time, then in batches of 100, then consumed by one consumer.
import { Redis } from "ioredis";
import { randomUUID } from "node:crypto";
import { Publisher, Consumer } from "../dist/esm/index.js";
const N = Number(process.env.N ?? 20000);
const r = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const prefix = `tsbench:${randomUUID()}:`;
const p = new Publisher(r, { serviceName: "bench", streamPrefix: prefix, maxLen: -1 });
const payload = { photoId: "p-1", size: 1024, owner: "u-1" };
let t = performance.now();
for (let i = 0; i < N; i++) await p.publish("bench.one", { data: payload });
const seq = N / ((performance.now() - t) / 1000);
t = performance.now();
for (let i = 0; i < N; i += 100) await p.publishBatch("bench.batch", Array.from({ length: 100 }, () => ({ data: payload })));
const batch = N / ((performance.now() - t) / 1000);
let got = 0;
t = performance.now();
await new Promise(async (res) => {
  const c = new Consumer(r, { group: "g", streamPrefix: prefix, blockMs: 100, batchSize: 100 });
  c.subscribe("bench.one", () => { if (++got === N) setImmediate(async () => { await c.close(); res(); }); });
  await c.start();
});
const cons = N / ((performance.now() - t) / 1000);
console.log(JSON.stringify({ events: N, publish_sequential_per_s: Math.round(seq), publish_batch100_per_s: Math.round(batch), consume_per_s: Math.round(cons) }));
const ks = await r.keys(prefix + "*"); if (ks.length) await r.del(...ks);
r.disconnect();
