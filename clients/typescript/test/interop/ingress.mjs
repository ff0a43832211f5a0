// Publishes through the gateway's ingress at GATEWAY_URL with API_KEY: one
// JSON event (attributes in ATTRS), then a batch of a JSON and a binary event
// of TYPE; then tries a wrong key and an event the gateway refuses. Prints one
// JSON line: the ids and the two errors.
import { IngressPublisher, IngressError } from "../../dist/esm/index.js";
const p = new IngressPublisher({ url: process.env.GATEWAY_URL, token: process.env.API_KEY, source: "/node-ingress" });
const type = process.env.TYPE;
const one = await p.publish(type, { data: { photoId: "p-8" }, subject: "p-8", room: "album-1", attributes: JSON.parse(process.env.ATTRS ?? "{}") });
const batch = await p.publishBatch(type, [
  { data: { n: 1 }, user: "alice" },
  { data: new Uint8Array([0, 1, 2, 255]), datacontenttype: "application/octet-stream" },
]);
const err = async (f) => { try { await f(); return null; } catch (e) { return e instanceof IngressError ? { status: e.status, field: e.field ?? "", message: e.message } : { message: String(e) }; } };
const badKey = await err(() => new IngressPublisher({ url: process.env.GATEWAY_URL, token: "wrong-key", source: "/x" }).publish(type, { data: 1 }));
const badBroadcast = await err(() => p.publish(type, { data: 1, attributes: { broadcast: "maybe" } }));
process.stdout.write(JSON.stringify({ one, batch, badKey, badBroadcast, stats: p.stats }) + "\n");
