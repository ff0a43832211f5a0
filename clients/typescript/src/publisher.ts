import { randomUUID } from "node:crypto";
import type { Redis, Cluster } from "ioredis";
import { validateType } from "./topic.js";
import { DefaultContentType, DefaultMaxLen, Keys, SpecVersion, isJSONContentType } from "./wire.js";
import { write, type Retention } from "./write.js";

/** PublisherOptions configure a Publisher (the Node side of bus.Config). */
export interface PublisherOptions {
  /** The source attribute of published events (bus.Config.ServiceName). */
  serviceName: string;
  streamPrefix?: string;
  /** Approximate MAXLEN per stream; default 100000, -1 for none. */
  maxLen?: number;
  /** MINID retention in milliseconds; wins over maxLen. */
  maxAgeMs?: number;
  defaultContentType?: string;
  /** Largest event (field names + values + data) in bytes; 0 means no limit. */
  maxEventSize?: number;
  /** Furthest in the future deliverAt may be, in ms; default 90 days (bus.DefaultMaxDelay), -1 for no limit. */
  maxDelayMs?: number;
  /**
   * How long an event id written to a stream is remembered, in ms
   * (bus.Config.DedupWindow): a publish of the same id to the same stream
   * within it writes nothing and reports `duplicate`, whether the first write
   * was this publisher's, another Node one's or a Go one's (one script,
   * bus/lua/dedup_xadd.lua, one key). Default 120000 (bus.DefaultDedupWindow),
   * -1 for no deduplication. Give every publisher of a stream the same window.
   */
  dedupWindowMs?: number;
}

/** DefaultDedupWindowMs is bus.DefaultDedupWindow: 2 minutes. */
export const DefaultDedupWindowMs = 2 * 60 * 1000;

/** DefaultMaxDelayMs is bus.DefaultMaxDelay: 90 days. */
export const DefaultMaxDelayMs = 90 * 24 * 3600 * 1000;

/** PublishInput is one event to publish. data is JSON-encoded unless it is a Buffer/Uint8Array/string. */
export interface PublishInput {
  id?: string;
  data?: unknown;
  subject?: string;
  dataschema?: string;
  datacontenttype?: string;
  time?: string;
  source?: string;
  /** Browser addressing: a room, a user, or everyone. */
  room?: string;
  user?: string;
  broadcast?: boolean;
  /** Extension attributes (traceparent, correlationid, ...). */
  attributes?: Record<string, string>;
  /**
   * Deliver later: the event is checked and stored now, in the Go bus's
   * schedule (docs/replay-and-delay.md), and a mover (`eventbus serve`)
   * writes it to its stream when due. A time not after now delivers at once.
   */
  deliverAt?: Date | number;
}

/**
 * PublishResult is what was written. streamId is "" for a scheduled event
 * (not in its stream yet). duplicate is true when the event's id had been
 * written to its stream within the dedup window, so nothing was written:
 * streamId is then the earlier entry's (bus.IsDuplicate).
 */
export interface PublishResult { id: string; streamId: string; fields: Record<string, string>; scheduledFor?: Date; duplicate?: boolean }

/** Publisher writes events exactly as the Go bus.Publisher does. The caller owns the client. */
export class Publisher {
  private readonly keys: Keys;
  private readonly known = new Set<string>();
  private readonly retention: Retention;
  private readonly dedupWindowMs: number;
  private closed = false;
  /** Counters as the old client's stats had; duplicates as bus.Publisher.Duplicates (not written, not in published). */
  readonly stats = { published: 0, errors: 0, duplicates: 0 };

  constructor(private readonly client: Redis | Cluster, private readonly opts: PublisherOptions) {
    if (!opts.serviceName) throw new TypeError("PublisherOptions.serviceName is required");
    this.keys = new Keys(opts.streamPrefix);
    const maxLen = opts.maxLen ?? DefaultMaxLen;
    this.retention = { maxLen: maxLen > 0 ? maxLen : 0, maxAgeMs: opts.maxAgeMs };
    const w = opts.dedupWindowMs ?? 0;
    if (!Number.isInteger(w) || w < -1) throw new RangeError(`dedupWindowMs ${w}: use at least 1, 0 for the default or -1 for no deduplication`);
    this.dedupWindowMs = w === 0 ? DefaultDedupWindowMs : w;
  }

  /** publish writes one event of the given type. */
  async publish(type: string, ev: PublishInput = {}): Promise<PublishResult> {
    return (await this.publishBatch(type, [ev]))[0];
  }

  /** publishBatch writes several events of one type in one round trip; if any is invalid nothing is written. */
  async publishBatch(type: string, evs: PublishInput[]): Promise<PublishResult[]> {
    if (this.closed) throw new Error("eventbus: publisher is closed");
    try {
      if (!this.known.has(type)) validateType(type);
      const now = new Date().toISOString();
      const prepared = evs.map((e) => this.prepare(type, e, now));
      const dues = this.dues(evs);
      if (dues.some((d) => d > 0)) await this.schedule(type, prepared, dues);
      const immediate = prepared.filter((_, i) => dues[i] === 0);
      const register = !this.known.has(type);
      const written = immediate.length === 0 ? [] : await write(this.client, {
        streamKey: this.keys.stream(type), pushKey: this.keys.push(), registryKey: this.keys.registry(), type,
        entries: immediate.map((p) => ({ id: p.fields.id, fields: p.flat, addressed: p.addressed })), register, retention: this.retention,
        dedupWindowMs: this.dedupWindowMs, dedupKey: (stream, id) => this.keys.dedup(stream, id),
      });
      if (register && immediate.length > 0) this.known.add(type);
      const dups = written.filter((w) => w.duplicate).length;
      this.stats.published += evs.length - dups;
      this.stats.duplicates += dups;
      let next = 0;
      return prepared.map((p, i) => {
        if (dues[i] > 0) return { id: p.fields.id, streamId: "", fields: p.fields, scheduledFor: new Date(dues[i]) };
        const w = written[next++];
        return w.duplicate ? { id: p.fields.id, streamId: w.streamId, fields: p.fields, duplicate: true } : { id: p.fields.id, streamId: w.streamId, fields: p.fields };
      });
    } catch (err) {
      this.stats.errors++;
      throw err;
    }
  }

  /** dues returns each event's due time in Unix ms, 0 for now; it throws for one past maxDelayMs. */
  private dues(evs: PublishInput[]): number[] {
    const now = Date.now();
    const max = this.opts.maxDelayMs ?? DefaultMaxDelayMs;
    return evs.map((e, i) => {
      if (e.deliverAt === undefined) return 0;
      const due = e.deliverAt instanceof Date ? e.deliverAt.getTime() : e.deliverAt;
      if (!Number.isFinite(due)) throw new TypeError(`event ${i + 1} of ${evs.length}: deliverAt is not a valid time`);
      if (due <= now) return 0;
      if (max > 0 && due - now > max) {
        throw new RangeError(`event ${i + 1} of ${evs.length}: deliverAt ${new Date(due).toISOString()} is beyond the scheduling horizon (maxDelayMs ${max}); nothing written`);
      }
      return due;
    });
  }

  /**
   * schedule stores delayed events as bus.Publisher does (bus/delay.go): the
   * schedule key in the set of schedules, then, in one MULTI on one slot,
   * each event's fields as netstrings in the schedule's hash and its id in
   * the schedule's sorted set, scored by its due time.
   */
  private async schedule(type: string, prepared: { fields: Record<string, string>; flat: (string | Buffer)[] }[], dues: number[]): Promise<void> {
    const zkey = `{${this.keys.stream(type)}}:scheduled`;
    await this.client.sadd(this.keys.schedules(), zkey);
    const m = this.client.multi();
    prepared.forEach((p, i) => {
      if (dues[i] === 0) return;
      m.hset(zkey + ":data", p.fields.id, netstrings(p.flat));
      m.zadd(zkey, dues[i], p.fields.id);
    });
    const res = await m.exec();
    for (const [err] of res ?? []) if (err) throw err;
  }

  private prepare(type: string, e: PublishInput, now: string) {
    const f: Record<string, string> = { ...(e.attributes ?? {}) };
    for (const k of Object.keys(f)) {
      if (k === "data" || k === "_watermill_message_uuid") throw new TypeError(`attribute ${k} is reserved`);
      if (k.startsWith("_eventbus_")) delete f[k];
    }
    if (f.type && f.type !== type) throw new TypeError(`type attribute ${f.type} does not match ${type}`);
    if (f.specversion && f.specversion !== SpecVersion) throw new TypeError(`specversion ${f.specversion} is not supported`);
    const id = e.id ?? f.id ?? randomUUID();
    if (f.id && f.id !== id) throw new TypeError(`id attribute ${f.id} differs from id ${id}`);
    f.id = id;
    f.type = type;
    f.specversion = SpecVersion;
    f.source = e.source ?? f.source ?? this.opts.serviceName;
    const time = e.time ?? f.time;
    if (time !== undefined && Number.isNaN(Date.parse(time))) throw new TypeError(`time ${time} is not RFC 3339`);
    f.time = time ?? now;
    f.datacontenttype = e.datacontenttype ?? f.datacontenttype ?? this.opts.defaultContentType ?? DefaultContentType;
    if (e.subject) f.subject = e.subject;
    if (e.dataschema) f.dataschema = e.dataschema;
    if (e.room) f.room = e.room;
    if (e.user) f.user = e.user;
    if (e.broadcast !== undefined) f.broadcast = String(e.broadcast);
    if (f.broadcast && f.broadcast !== "true" && f.broadcast !== "false") throw new TypeError(`broadcast must be "true" or "false"`);
    let data: Buffer;
    let encoded = false; // JSON.stringify made it: valid JSON, no need to parse it again
    if (e.data === undefined) data = Buffer.alloc(0);
    else if (Buffer.isBuffer(e.data) || e.data instanceof Uint8Array) data = Buffer.from(e.data as Uint8Array);
    else if (typeof e.data === "string" && !isJSONContentType(f.datacontenttype)) data = Buffer.from(e.data);
    else { data = Buffer.from(JSON.stringify(e.data)); encoded = true; }
    if (!encoded && data.length > 0 && isJSONContentType(f.datacontenttype)) {
      try { JSON.parse(data.toString("utf8")); } catch { throw new TypeError(`data is not valid JSON but datacontenttype is ${f.datacontenttype}`); }
    }
    const flat: (string | Buffer)[] = [];
    let size = 4 + data.length;
    for (const [k, v] of Object.entries(f)) { flat.push(k, v); size += k.length + v.length; }
    if (this.opts.maxEventSize && size > this.opts.maxEventSize) throw new RangeError(`event of ${size} bytes exceeds ${this.opts.maxEventSize}`);
    flat.push("data", data);
    const addressed = !!f.room || !!f.user || f.broadcast === "true";
    return { fields: f, flat, addressed };
  }

  /** close stops further publishing; the Redis client stays the caller's. Idempotent. */
  close(): void { this.closed = true; }
}

/** netstrings encodes fields as bus/delay.go's encodeFields does: "<byte length>:<bytes>" each. */
function netstrings(fields: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    const b = typeof f === "string" ? Buffer.from(f, "utf8") : f;
    parts.push(Buffer.from(`${b.length}:`), b);
  }
  return Buffer.concat(parts);
}
