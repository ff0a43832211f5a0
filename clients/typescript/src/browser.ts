/**
 * Browser client for the gateway's GET /v1/stream (SSE). It reads the stream
 * with fetch rather than EventSource, because EventSource stops for good on a
 * 401 and cannot be given a new token: getToken() is called on every
 * (re)connect and the token is sent as the access_token query parameter the
 * gateway accepts (a query parameter, not an Authorization header, so that a
 * cross-origin stream needs no preflight for it). Events are named by type,
 * gap messages go to onGap, data_base64 is decoded, Last-Event-ID resumes.
 */
import { match, validatePattern } from "./topic.js";

/** StreamEvent is one event as the gateway sends it (JSON attributes + data). */
export interface StreamEvent<T = unknown> {
  id: string; type: string; source: string; specversion: string; time?: string; subject?: string;
  /** JSON data, or a Uint8Array decoded from data_base64. */
  data?: T | Uint8Array;
  attributes: Record<string, unknown>;
  /** The SSE id (a push stream id), used to resume. */
  lastEventId: string;
}

/** Gap says events may be lost (the gateway's "gap" message). */
export interface Gap { lastEventId: string; since: string; oldestId?: string; message: string }

/** BrowserClientOptions configure a BrowserClient. */
export interface BrowserClientOptions {
  /** Gateway base URL, e.g. https://gw.example.com */
  url: string;
  /** Returns a fresh token; called on every (re)connect. */
  getToken?: () => string | Promise<string>;
  rooms?: string[];
  /** Resume from this id on the first connect. */
  lastEventId?: string;
  onGap?: (g: Gap) => void;
  /** Called with every error the client survives: a failed connect (a StreamError for an HTTP status), a handler that threw. */
  onError?: (e: unknown) => void;
  onOpen?: () => void;
  /** Backoff bounds in ms (full jitter); default 500..30000. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  fetch?: typeof fetch;
}

/** StreamError is a stream request the gateway answered with an error status (401: the token was refused). */
export class StreamError extends Error {
  constructor(readonly status: number, readonly body: string) {
    super(`gateway stream: HTTP ${status}${body ? `: ${body}` : ""}`);
    this.name = "StreamError";
  }
}

/** backoff returns a full-jitter delay for the attempt'th retry. */
export function backoff(attempt: number, min = 500, max = 30000, rnd = Math.random): number {
  const cap = Math.min(max, min * 2 ** attempt);
  return Math.max(min, Math.floor(rnd() * cap));
}

/** decodeData turns the gateway's data / data_base64 into a value. */
export function decodeData(obj: Record<string, unknown>): unknown {
  if (typeof obj.data_base64 === "string") {
    const bin = atob(obj.data_base64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  return obj.data;
}

/** BrowserClient subscribes to types and patterns on the gateway's SSE stream. */
export class BrowserClient {
  private readonly handlers: { pattern: string; fn: (e: StreamEvent<any>) => void }[] = [];
  private abort = new AbortController();
  private started = false;
  private closed = false;
  private lastId?: string;
  /** Connections made so far (for stats). */
  connects = 0;

  constructor(private readonly o: BrowserClientOptions) { this.lastId = o.lastEventId; }

  /** on adds a typed handler for a type or pattern. */
  on<T = unknown>(typeOrPattern: string, fn: (e: StreamEvent<T>) => void): this {
    validatePattern(typeOrPattern);
    this.handlers.push({ pattern: typeOrPattern, fn });
    return this;
  }

  /** connect starts reading; it reconnects with backoff until close. Calling it again does nothing. */
  connect(): void {
    if (this.started || this.closed) return;
    this.started = true;
    void this.run();
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.closed) {
      let opened = false;
      try {
        await this.once(() => { opened = true; });
      } catch (e) {
        if (this.closed) return;
        this.o.onError?.(e);
      }
      if (this.closed) return;
      if (opened) attempt = 0; // a stream that opened and then ended starts the backoff over
      await this.sleep(backoff(attempt++, this.o.minBackoffMs, this.o.maxBackoffMs));
    }
  }

  /** sleep waits ms, or until close. */
  private sleep(ms: number): Promise<void> {
    return new Promise((res) => {
      const t = setTimeout(res, ms);
      this.abort.signal.addEventListener("abort", () => { clearTimeout(t); res(); }, { once: true });
    });
  }

  private async once(opened: () => void): Promise<void> {
    const u = new URL("/v1/stream", this.o.url);
    const token = this.o.getToken ? await this.o.getToken() : undefined;
    if (this.closed) return;
    if (token) u.searchParams.set("access_token", token);
    for (const r of this.o.rooms ?? []) u.searchParams.append("rooms", r);
    if (this.lastId) u.searchParams.set("lastEventId", this.lastId);
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    const res = await (this.o.fetch ?? fetch)(u, { headers, signal: this.abort.signal, cache: "no-store" });
    if (!res.ok || !res.body) {
      const body = await res.text().catch(() => "");
      throw new StreamError(res.status, body.slice(0, 500));
    }
    this.connects++;
    opened();
    this.o.onOpen?.();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, "\n");
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        this.dispatch(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
  }

  /** dispatch parses one SSE block. Exposed for tests. */
  dispatch(block: string): void {
    let event = "message", id: string | undefined;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const f = c < 0 ? line : line.slice(0, c);
      const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
      if (f === "event") event = v; else if (f === "id") id = v; else if (f === "data") data.push(v);
    }
    if (id) this.lastId = id;
    if (data.length === 0) return;
    const text = data.join("\n");
    let obj: Record<string, unknown>;
    try { obj = JSON.parse(text); } catch (e) { this.o.onError?.(new Error(`gateway stream: ${event} message is not JSON: ${e}`)); return; }
    if (event === "gap") { this.call(() => this.o.onGap?.(obj as unknown as Gap)); return; }
    const type = String(obj.type ?? event);
    const ev: StreamEvent = {
      id: String(obj.id ?? ""), type, source: String(obj.source ?? ""), specversion: String(obj.specversion ?? ""),
      time: obj.time as string | undefined, subject: obj.subject as string | undefined,
      data: decodeData(obj) as any, attributes: obj, lastEventId: this.lastId ?? "",
    };
    // A handler that throws is reported and does not keep the others (or
    // the stream) from going on.
    for (const h of this.handlers) if (match(h.pattern, type)) this.call(() => h.fn(ev));
  }

  private call(fn: () => void): void {
    try { fn(); } catch (e) { this.o.onError?.(e); }
  }

  /** close stops reading, also a connect or backoff in progress; idempotent. */
  close(): void { this.closed = true; this.abort.abort(); }
}
