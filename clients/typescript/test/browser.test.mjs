// BrowserClient against a real SSE server in this process (node:http): handler
// errors, 401 then a fresh token, close during a connect. The headless-Chromium
// test against the real gateway is browser_test.go.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { BrowserClient, StreamError } from "../dist/esm/browser.js";

function sse(handler) {
  return new Promise((res) => {
    const srv = createServer(handler).listen(0, "127.0.0.1", () => res({ srv, url: `http://127.0.0.1:${srv.address().port}` }));
  });
}

test("a handler that throws is reported; the other handlers and later events go on", () => {
  const seen = [], errors = [];
  const b = new BrowserClient({ url: "http://x", onError: (e) => errors.push(e) });
  b.on("a.b", () => { throw new Error("boom"); }).on("a.*", (e) => seen.push(e.id));
  b.dispatch('id: 1-0\nevent: a.b\ndata: {"id":"x1","type":"a.b"}');
  b.dispatch('id: 2-0\nevent: a.b\ndata: {"id":"x2","type":"a.b"}');
  b.dispatch("event: gap\ndata: not json");
  assert.deepEqual(seen, ["x1", "x2"]);
  assert.equal(errors.length, 3);
  assert.match(String(errors[2]), /gap message is not JSON/);
});

test("a refused token is replaced by getToken on the next connect; Last-Event-ID resumes", async (t) => {
  const reqs = [];
  const { srv, url } = await sse((req, res) => {
    const u = new URL(req.url, "http://x");
    reqs.push({ token: u.searchParams.get("access_token"), last: req.headers["last-event-id"] ?? null, rooms: u.searchParams.getAll("rooms") });
    if (u.searchParams.get("access_token") !== "good") { res.writeHead(401).end('{"error":{"message":"token expired"}}'); return; }
    res.writeHead(200, { "Content-Type": "text/event-stream" });
    if (reqs.filter((r) => r.token === "good").length === 1) {
      res.end('id: 5-0\nevent: t.x\ndata: {"id":"e5","type":"t.x","data":{"n":5}}\n\n'); // then the stream ends
    } else {
      res.write('id: 6-0\nevent: t.x\ndata: {"id":"e6","type":"t.x","data":{"n":6}}\n\n');
    }
  });
  t.after(() => { srv.closeAllConnections(); srv.close(); });
  const tokens = ["expired", "good", "good"];
  const errors = [], got = [];
  let done;
  const finished = new Promise((r) => { done = r; });
  const c = new BrowserClient({
    url, rooms: ["r1"], minBackoffMs: 10, maxBackoffMs: 20,
    getToken: () => tokens.shift() ?? "good", onError: (e) => errors.push(e),
  });
  c.on("t.x", (e) => { got.push(e.data.n); if (got.length === 2) done(); });
  c.connect();
  c.connect(); // no second loop
  await finished;
  c.close();
  assert.deepEqual(got, [5, 6]);
  assert.equal(errors[0] instanceof StreamError && errors[0].status, 401);
  assert.deepEqual(reqs.map((r) => [r.token, r.last]), [["expired", null], ["good", null], ["good", "5-0"]]);
  assert.deepEqual(reqs[0].rooms, ["r1"]);
  assert.equal(c.connects, 2);
});

test("close during a pending getToken never connects", async (t) => {
  let hits = 0;
  const { srv, url } = await sse((_req, res) => { hits++; res.writeHead(200, { "Content-Type": "text/event-stream" }); });
  t.after(() => { srv.closeAllConnections(); srv.close(); });
  let release;
  const c = new BrowserClient({ url, getToken: () => new Promise((r) => { release = r; }) });
  c.connect();
  await new Promise((r) => setImmediate(r));
  c.close();
  release("tok");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(hits, 0);
  assert.equal(c.connects, 0);
});
