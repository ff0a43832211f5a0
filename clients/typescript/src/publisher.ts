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
}

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
}

/** PublishResult is what was written. */
export interface PublishResult { id: string; streamId: string; fields: Record<string, string> }

/** Publisher writes events exactly as the Go bus.Publisher does. The caller owns the client. */
export class Publisher {
  private readonly keys: Keys;
  private readonly known = new Set<string>();
  private readonly retention: Retention;
  private closed = false;
  /** Counters as the old client's stats had. */
  readonly stats = { published: 0, errors: 0 };

  constructor(private readonly client: Redis | Cluster, private readonly opts: PublisherOptions) {
    if (!opts.serviceName) throw new TypeError("PublisherOptions.serviceName is required");
    this.keys = new Keys(opts.streamPrefix);
    const maxLen = opts.maxLen ?? DefaultMaxLen;
    this.retention = { maxLen: maxLen > 0 ? maxLen : 0, maxAgeMs: opts.maxAgeMs };
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
      const register = !this.known.has(type);
      const ids = await write(this.client, {
        streamKey: this.keys.stream(type), pushKey: this.keys.push(), registryKey: this.keys.registry(), type,
        entries: prepared.map((p) => ({ fields: p.flat, addressed: p.addressed })), register, retention: this.retention,
      });
      if (register) this.known.add(type);
      this.stats.published += evs.length;
      return prepared.map((p, i) => ({ id: p.fields.id, streamId: ids[i], fields: p.fields }));
    } catch (err) {
      this.stats.errors++;
      throw err;
    }
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
