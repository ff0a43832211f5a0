/**
 * The one place the Node publisher writes to Redis. It does what the Go
 * publisher's write step does (bus/publisher.go): XADD with approximate
 * trimming to the type's stream, a copy to the push stream when addressed,
 * and on the first publish of a type by this process SADD + PUBLISH on the
 * registry, all in one pipeline. When the Go bus moves that step to
 * bus/lua/publish.lua, this module is where the script is loaded.
 */
import type { Redis, Cluster } from "ioredis";

export interface Retention { maxLen?: number; maxAgeMs?: number }

export interface WriteOp {
  streamKey: string;
  pushKey: string;
  registryKey: string;
  type: string;
  /** Flat field/value list, in write order. */
  entries: { fields: (string | Buffer)[]; addressed: boolean }[];
  register: boolean;
  retention: Retention;
}

function trim(r: Retention): (string | number)[] {
  if (r.maxAgeMs && r.maxAgeMs > 0) return ["MINID", "~", String(Date.now() - r.maxAgeMs)];
  if (r.maxLen && r.maxLen > 0) return ["MAXLEN", "~", r.maxLen];
  return [];
}

/** write runs op and returns the stream ids of the type's entries. */
export async function write(client: Redis | Cluster, op: WriteOp): Promise<string[]> {
  const t = trim(op.retention);
  if (op.entries.length === 1 && !op.register && !op.entries[0].addressed) {
    // The common case, one plain XADD (as the Go publisher's fast path).
    return [String(await client.xadd(op.streamKey, ...(t as any[]), "*", ...(op.entries[0].fields as any[])))];
  }
  const pipe = client.pipeline();
  for (const e of op.entries) {
    pipe.xadd(op.streamKey, ...(t as any[]), "*", ...(e.fields as any[]));
    if (e.addressed) pipe.xadd(op.pushKey, ...(t as any[]), "*", ...(e.fields as any[]));
  }
  if (op.register) {
    pipe.sadd(op.registryKey, op.type);
    pipe.publish(op.registryKey, op.type);
  }
  const res = (await pipe.exec()) ?? [];
  const ids: string[] = [];
  let i = 0;
  for (const e of op.entries) {
    const [err, id] = res[i++];
    if (err) throw err;
    ids.push(String(id));
    if (e.addressed) { const [perr] = res[i++]; if (perr) throw perr; }
  }
  for (; i < res.length; i++) if (res[i][0]) throw res[i][0];
  return ids;
}
