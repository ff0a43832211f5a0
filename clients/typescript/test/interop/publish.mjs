// Publishes one event of TYPE under PREFIX with the attributes in ATTRS (JSON) and data DATA (JSON); prints its id.
import { Redis } from "ioredis";
import { Publisher } from "../../dist/esm/index.js";
const r = new Redis(process.env.REDIS_URL);
const p = new Publisher(r, { serviceName: "node-interop", streamPrefix: process.env.PREFIX });
const res = await p.publish(process.env.TYPE, { data: JSON.parse(process.env.DATA), subject: "p-7", attributes: JSON.parse(process.env.ATTRS ?? "{}") });
process.stdout.write(res.id + "\n");
r.disconnect();
