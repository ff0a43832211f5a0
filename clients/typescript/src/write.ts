/**
 * The one place the Node publisher writes to Redis. It does what the Go
 * publisher's write step does (bus/publisher.go, bus/dedup.go): each entry
 * (an event on its type's stream, and its copy on the push stream when
 * addressed) is written by bus/lua/dedup_xadd.lua — the same script, copied
 * into lua.generated.ts at build time — with the same dedup keys and window,
 * so a Go and a Node publisher drop each other's repeats; with the window off
 * it is a plain XADD. Trimming is the XADD's own (MAXLEN ~ or MINID ~), and
 * on the first publish of a type by this process SADD + PUBLISH on the
 * registry follow, all in one pipeline.
 */
import { createHash } from "node:crypto";
import type { Redis, Cluster } from "ioredis";
import { dedupXAddLua } from "./lua.generated.js";

export interface Retention { maxLen?: number; maxAgeMs?: number }

export interface WriteOp {
  streamKey: string;
  pushKey: string;
  registryKey: string;
  type: string;
  /** Each entry's event id and flat field/value list, in write order. */
  entries: { id: string; fields: (string | Buffer)[]; addressed: boolean }[];
  register: boolean;
  retention: Retention;
  /** How long an event id is remembered, in ms (bus.Config.DedupWindow); 0 or less: plain XADDs. */
  dedupWindowMs: number;
  /** bus.Config.DedupKey: the key that records that id was written to stream. */
  dedupKey: (stream: string, id: string) => string;
}

/** Written is the outcome of one entry: its stream id, or the earlier entry's when its id was a duplicate. */
export interface Written { streamId: string; duplicate: boolean }

const dedupSha = createHash("sha1").update(dedupXAddLua).digest("hex");

function trim(r: Retention): (string | number)[] {
  if (r.maxAgeMs && r.maxAgeMs > 0) return ["MINID", "~", String(Date.now() - r.maxAgeMs)];
  if (r.maxLen && r.maxLen > 0) return ["MAXLEN", "~", r.maxLen];
  return [];
}

/** One command to send: a plain XADD, or the script's keys and arguments. */
interface Cmd { stream: string; keys?: [string, string]; args: (string | number | Buffer)[]; push: boolean }

function isNoScript(err: unknown): boolean { return !!err && String((err as Error).message ?? err).startsWith("NOSCRIPT"); }

/** write runs op and returns the outcome of each of the type's entries (push copies are not reported). */
export async function write(client: Redis | Cluster, op: WriteOp): Promise<Written[]> {
  const t = trim(op.retention);
  const dedup = op.dedupWindowMs > 0;
  const cmd = (stream: string, name: string, fields: (string | Buffer)[], push: boolean): Cmd => dedup
    ? { stream, push, keys: [stream, op.dedupKey(stream, name)], args: [op.dedupWindowMs, ...t, "*", ...fields] }
    : { stream, push, args: [...t, "*", ...fields] };
  const cmds: Cmd[] = [];
  for (const e of op.entries) {
    cmds.push(cmd(op.streamKey, e.id, e.fields, false));
    // One push stream holds every type: an id is unique per type (as bus/dedup.go names it).
    if (e.addressed) cmds.push(cmd(op.pushKey, op.type + ":" + e.id, e.fields, true));
  }
  if (cmds.length === 1 && !op.register) {
    // The common case, one command (the Go publisher's fast path).
    const c = cmds[0];
    if (!c.keys) return [{ streamId: String(await client.xadd(c.stream, ...(c.args as any[]))), duplicate: false }];
    let res: unknown;
    try {
      res = await client.evalsha(dedupSha, 2, ...c.keys, ...c.args);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      res = await client.eval(dedupXAddLua, 2, ...c.keys, ...c.args); // loads it (after a restart or SCRIPT FLUSH)
    }
    return [outcome(res)];
  }
  const pipe = client.pipeline();
  for (const c of cmds) {
    if (c.keys) pipe.evalsha(dedupSha, 2, ...c.keys, ...c.args);
    else pipe.xadd(c.stream, ...(c.args as any[]));
  }
  if (op.register) {
    // Record the type after its first entry exists (a wildcard subscriber that learns of it reads from its first entry).
    pipe.sadd(op.registryKey, op.type);
    pipe.publish(op.registryKey, op.type);
  }
  const res = (await pipe.exec()) ?? [];
  // A script unknown to the server did not run: send those again with EVAL, which loads it.
  const again = cmds.map((c, i) => (c.keys && isNoScript(res[i][0]) ? i : -1)).filter((i) => i >= 0);
  if (again.length > 0) {
    const p2 = client.pipeline();
    for (const i of again) p2.eval(dedupXAddLua, 2, ...cmds[i].keys!, ...cmds[i].args);
    const res2 = (await p2.exec()) ?? [];
    again.forEach((i, j) => { res[i] = res2[j]; });
  }
  for (const [err] of res) if (err) throw err;
  const out: Written[] = [];
  cmds.forEach((c, i) => {
    if (c.push) return;
    out.push(c.keys ? outcome(res[i][1]) : { streamId: String(res[i][1]), duplicate: false });
  });
  return out;
}

/** outcome reads the script's reply: {1, new entry id} or {0, the earlier entry's id}. */
function outcome(res: unknown): Written {
  const [written, id] = res as [number, string];
  return { streamId: String(id), duplicate: Number(written) === 0 };
}
