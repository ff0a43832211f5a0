// Consumes TYPE as consumer CONSUMER of GROUP under PREFIX and never finishes a
// handler: prints "held <id>" for each event it takes and holds it (pending)
// until the process is killed. The heartbeat is the default (2 s).
import { Redis } from "ioredis";
import { Consumer } from "../../dist/esm/index.js";
const r = new Redis(process.env.REDIS_URL);
const c = new Consumer(r, { group: process.env.GROUP, consumer: process.env.CONSUMER, streamPrefix: process.env.PREFIX, blockMs: 100, claimMinIdleMs: 600000, handlerTimeoutMs: -1 });
c.subscribe(process.env.TYPE, async (ev) => {
  process.stdout.write(`held ${ev.id}\n`);
  await new Promise(() => {});
});
await c.start();
setTimeout(() => process.exit(3), 60000); // a bound, should the test not kill it
