// Publishes one event of TYPE under PREFIX with the attributes in ATTRS (JSON) and data DATA (JSON); prints its id.
// With DELIVER_IN_MS, the event is scheduled that far ahead (deliverAt). With ID, the event
// has that id; a duplicate (the id written within the dedup window) prints "<id> duplicate <earlier entry id>".
import { Redis } from "ioredis";
import { Publisher } from "../../dist/esm/index.js";
const r = new Redis(process.env.REDIS_URL);
const p = new Publisher(r, { serviceName: "node-interop", streamPrefix: process.env.PREFIX });
const deliverAt = process.env.DELIVER_IN_MS ? Date.now() + Number(process.env.DELIVER_IN_MS) : undefined;
const res = await p.publish(process.env.TYPE, { id: process.env.ID || undefined, data: JSON.parse(process.env.DATA), subject: "p-7", attributes: JSON.parse(process.env.ATTRS ?? "{}"), deliverAt });
process.stdout.write(res.id + (res.duplicate ? ` duplicate ${res.streamId}` : "") + "\n");
r.disconnect();
