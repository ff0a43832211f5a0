// The Node example of docs/typescript-client.md, in JavaScript, under a
// prefix of its own (the IngressPublisher part runs against the real
// gateway in interop_test.go).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { Publisher, Consumer } from "@shared-infra/eventbus";

test("the docs example: publish, then a pattern consumer gets it", async (t) => {
  const streamPrefix = `tsexample:${randomUUID()}:`;
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  t.after(async () => { const ks = await redis.keys(streamPrefix + "*"); if (ks.length) await redis.del(...ks); redis.disconnect(); });

  const pub = new Publisher(redis, { serviceName: "uploader", streamPrefix });
  await pub.publish("photo.uploaded", { data: { photoId: "p-42" }, subject: "p-42", room: "album-1" });

  const c = new Consumer(redis, { group: "thumbnailer", streamPrefix, blockMs: 100 });
  const got = new Promise((res) => c.subscribe("photo.>", async (ev) => res(ev)));
  await c.start();
  const ev = await got;
  await c.close();
  assert.equal(ev.type, "photo.uploaded");
  assert.equal(ev.data.photoId, "p-42");
  assert.equal(ev.attributes.room, "album-1");
  assert.equal(pub.stats.published, 1);
  assert.equal(c.stats.handled, 1);
});
