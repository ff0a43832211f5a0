/**
 * Publishing through the gateway's HTTP ingress (POST /v1/events) instead of
 * writing to Redis: for services that have no Redis access. Events are sent
 * as CloudEvents in structured mode (one event) or batch mode (several), with
 * fetch; the gateway validates them and publishes them through the bus
 * publisher, the one publish path (see docs/gateway.md).
 */
import { validateType } from "./topic.js";
import { DefaultContentType, SpecVersion, isJSONContentType } from "./wire.js";
import type { PublishInput } from "./publisher.js";

/** EventsPath is the gateway's ingress endpoint. */
export const EventsPath = "/v1/events";

/** IngressPublisherOptions configure an IngressPublisher. */
export interface IngressPublisherOptions {
  /** Gateway base URL, e.g. https://events.example.com */
  url: string;
  /** An API key or a JWT that grants publishing, sent as `Authorization: Bearer`; a function is called per request. */
  token: string | (() => string | Promise<string>);
  /** The source attribute of events that have none (as the Go IngressPublisher's Source). */
  source: string;
  /** Bound on one request in ms; default 10000. */
  timeoutMs?: number;
  defaultContentType?: string;
  fetch?: typeof fetch;
}

/** IngressError is a refusal by the gateway: its status and the field it names. */
export class IngressError extends Error {
  constructor(
    message: string,
    /** HTTP status: 400 invalid, 401/403 credentials, 413 too large, 429 rate, 503 retry later. */
    readonly status: number,
    /** The attribute the gateway blames (`type`, `data`, ...), when it names one. */
    readonly field?: string,
    /** Seconds from Retry-After (429, 503). */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "IngressError";
  }
}

/** IngressPublisher publishes events through the gateway's HTTP ingress. */
export class IngressPublisher {
  private closed = false;
  /** Counters as the old client's stats had. */
  readonly stats = { published: 0, errors: 0 };

  constructor(private readonly o: IngressPublisherOptions) {
    if (!o.url) throw new TypeError("IngressPublisherOptions.url is required");
    if (!o.token) throw new TypeError("IngressPublisherOptions.token is required");
    if (!o.source) throw new TypeError("IngressPublisherOptions.source is required");
  }

  /** publish sends one event of the given type and returns its id. */
  async publish(type: string, ev: PublishInput = {}): Promise<string> {
    return (await this.send([toCloudEvent(type, ev, this.o.source, this.o.defaultContentType)], false))[0];
  }

  /**
   * publishBatch sends several events of one type in one request, in order.
   * Every event is checked before anything is published; resending a batch
   * with the same ids is safe for consumers that deduplicate by id.
   */
  async publishBatch(type: string, evs: PublishInput[]): Promise<string[]> {
    if (evs.length === 0) return [];
    return this.send(evs.map((e) => toCloudEvent(type, e, this.o.source, this.o.defaultContentType)), true);
  }

  private async send(events: Record<string, unknown>[], batch: boolean): Promise<string[]> {
    if (this.closed) throw new Error("eventbus: ingress publisher is closed");
    try {
      const token = typeof this.o.token === "function" ? await this.o.token() : this.o.token;
      const res = await (this.o.fetch ?? fetch)(new URL(EventsPath, this.o.url), {
        method: "POST",
        headers: {
          Authorization: `Bearer ${token}`,
          "Content-Type": batch ? "application/cloudevents-batch+json" : "application/cloudevents+json",
        },
        body: JSON.stringify(batch ? events : events[0]),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 10000),
      });
      const text = await res.text();
      if (res.status !== 202) {
        let field: string | undefined, message = text;
        try {
          const e = JSON.parse(text).error;
          field = e.field || undefined;
          message = e.message ?? text;
        } catch { /* not the gateway's JSON error */ }
        const ra = Number(res.headers.get("Retry-After"));
        throw new IngressError(`gateway ingress: HTTP ${res.status}${field ? ` (${field})` : ""}: ${message}`, res.status, field, ra > 0 ? ra : undefined);
      }
      const ids = (JSON.parse(text) as { ids: string[] }).ids;
      this.stats.published += ids.length;
      return ids;
    } catch (err) {
      this.stats.errors++;
      throw err;
    }
  }

  /** close stops further publishing. Idempotent. */
  close(): void { this.closed = true; }
}

/** toCloudEvent builds the structured-mode CloudEvent the gateway accepts for ev. */
export function toCloudEvent(type: string, ev: PublishInput, source: string, defaultContentType = DefaultContentType): Record<string, unknown> {
  validateType(type);
  const ce: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ev.attributes ?? {})) {
    if (k === "data" || k === "data_base64") throw new TypeError(`attribute ${k} is reserved`);
    if (!/^[a-z0-9]{1,20}$/.test(k)) throw new TypeError(`attribute name ${JSON.stringify(k)} must be 1-20 lower-case letters or digits (CloudEvents)`);
    ce[k] = v;
  }
  if (ce.type !== undefined && ce.type !== type) throw new TypeError(`type attribute ${ce.type} does not match ${type}`);
  const id = ev.id ?? (ce.id as string | undefined) ?? crypto.randomUUID();
  if (ce.id !== undefined && ce.id !== id) throw new TypeError(`id attribute ${ce.id} differs from id ${id}`);
  Object.assign(ce, { specversion: SpecVersion, id, type, source: ev.source ?? ce.source ?? source });
  const ct = ev.datacontenttype ?? (ce.datacontenttype as string | undefined) ?? defaultContentType;
  ce.datacontenttype = ct;
  if (ev.time) ce.time = ev.time;
  if (ev.subject) ce.subject = ev.subject;
  if (ev.dataschema) ce.dataschema = ev.dataschema;
  if (ev.room) ce.room = ev.room;
  if (ev.user) ce.user = ev.user;
  if (ev.broadcast !== undefined) ce.broadcast = ev.broadcast;
  if (ev.deliverAt !== undefined) {
    const due = new Date(ev.deliverAt);
    if (Number.isNaN(due.getTime())) throw new TypeError("deliverAt is not a valid time");
    ce.deliverat = due.toISOString(); // the gateway's deliverat extension
  }
  const d = ev.data;
  if (d === undefined) return ce;
  const bytes = d instanceof Uint8Array ? d : typeof d === "string" && !isJSONContentType(ct) ? new TextEncoder().encode(d) : undefined;
  if (bytes && isJSONContentType(ct)) {
    const text = new TextDecoder().decode(bytes);
    try { ce.data = JSON.parse(text); } catch { throw new TypeError(`data is not valid JSON but datacontenttype is ${ct}`); }
  } else if (bytes) {
    ce.data_base64 = base64(bytes);
  } else {
    ce.data = d;
  }
  return ce;
}

function base64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}
