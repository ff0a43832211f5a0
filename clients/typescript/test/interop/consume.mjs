// Consumes COUNT events of TYPE with group GROUP under PREFIX and prints each as a JSON line.
// CONSUMER names the consumer; CLAIM_MIN_IDLE_MS sets claimMinIdleMs (default the package's).
import { Redis } from "ioredis";
import { Consumer } from "../../dist/esm/index.js";
const r = new Redis(process.env.REDIS_URL);
const want = Number(process.env.COUNT ?? 1);
let n = 0;
const c = new Consumer(r, {
  group: process.env.GROUP, consumer: process.env.CONSUMER || undefined, streamPrefix: process.env.PREFIX, blockMs: 100,
  claimMinIdleMs: process.env.CLAIM_MIN_IDLE_MS ? Number(process.env.CLAIM_MIN_IDLE_MS) : undefined,
});
c.subscribe(process.env.TYPE, async (ev) => {
  process.stdout.write(JSON.stringify({ ...ev, raw: ev.raw.toString("utf8") }) + "\n");
  // close waits for the batch in hand, which includes this handler: do it after.
  if (++n === want) setImmediate(async () => { await c.close(); r.disconnect(); });
});
await c.start();
