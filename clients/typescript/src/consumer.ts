import { hostname } from "node:os";
import type { Redis, Cluster } from "ioredis";
import { isPattern, isValidType, match, validatePattern } from "./topic.js";
import { DefaultMaxLen, Keys, isJSONContentType, type Event } from "./wire.js";

/**
 * Handler handles one event; a throw leaves it pending (redelivered after
 * claimMinIdleMs), as does running past handlerTimeoutMs. signal is aborted
 * at that deadline (with a HandlerTimeoutError): pass it to fetch and the
 * like, as a Go handler passes its context on.
 */
export type Handler<T = unknown> = (ev: Event<T>, signal: AbortSignal) => void | Promise<void>;

/** HandlerTimeoutError fails a handler that ran past handlerTimeoutMs (the Go router's middleware.ErrTimeout). */
export class HandlerTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`handler timed out after ${timeoutMs}ms`);
    this.name = "HandlerTimeoutError";
  }
}

/** DefaultHandlerTimeoutMs is router.DefaultHandlerTimeout: 30 s. */
export const DefaultHandlerTimeoutMs = 30_000;
/** DefaultHeartbeatTtlMs is bus.DefaultHeartbeatTTL: 2 s. */
export const DefaultHeartbeatTtlMs = 2_000;

/** ConsumerOptions configure a Consumer (the Node side of the Go subscriber's config). */
export interface ConsumerOptions {
  /** Consumer group: every group gets every event once (bus.Config.ConsumerGroup). */
  group: string;
  /** Consumer name within the group; default hostname-pid. */
  consumer?: string;
  streamPrefix?: string;
  /** Entries per XREADGROUP / XAUTOCLAIM; default 100. */
  batchSize?: number;
  /** Block time of one read; default 1000 ms. */
  blockMs?: number;
  /** Entries idle this long in the group (a dead consumer's) are claimed; default 30000 ms. */
  claimMinIdleMs?: number;
  /** Where a new group starts on an existing stream; default "0" (bus.DefaultStartFrom). */
  startFrom?: string;
  /**
   * How often a pattern consumer re-reads the registry set; default 5000 ms
   * (bus.DefaultResyncInterval). New types are normally found at once through
   * the registry's Pub/Sub notification; the resync repairs a lost one.
   */
  resyncMs?: number;
  /**
   * A handler that still throws on this delivery of an event dead-letters it
   * (with the error as dlq_reason) instead of leaving it pending for another
   * redelivery; default 10 (router.DefaultMaxDeliveries), -1 for no limit.
   */
  maxDeliveries?: number;
  /**
   * The hard timeout of each handler call, in ms; default 30000
   * (router.DefaultHandlerTimeout), -1 for none. A handler still running at
   * the deadline has failed (HandlerTimeoutError): its event stays pending and
   * is redelivered, and dead-lettered at maxDeliveries, as for a throw. Its
   * signal is aborted then; JavaScript cannot stop a handler that ignores it,
   * so its work may go on while the event is redelivered.
   */
  handlerTimeoutMs?: number;
  /**
   * Lifetime of this consumer's heartbeat key, kept as the Go subscriber keeps
   * it (bus/heartbeat.go: `<prefix>$hb:<group>:<consumer>`, refreshed every
   * ttl/4, the name in `<prefix>$consumers:<group>`), so Go consumers of the
   * group never claim a live Node consumer's entries early, and every ttl/4
   * the entries of a consumer (Go or Node) whose heartbeat is gone are
   * claimed at once. Default 2000 (bus.DefaultHeartbeatTTL); -1 for no
   * heartbeat (a dead consumer's entries are then claimed after claimMinIdleMs).
   */
  heartbeatTtlMs?: number;
  /** Dead-letter stream MAXLEN; default 100000. */
  deadLetterMaxLen?: number;
  /** Called on errors the loop survives. */
  onError?: (err: unknown) => void;
}

/** ConsumerStats are the counters the old client's getStats() had, for consumption. */
export interface ConsumerStats { received: number; handled: number; failed: number; deadLettered: number; claimed: number; timedOut: number }

const required = ["id", "source", "specversion", "type"];

/**
 * Consumer reads the bus's streams with a consumer group: batched XREADGROUP,
 * one XACK per batch of handled entries, a hard timeout per handler call,
 * the Go subscriber's heartbeat (the entries of a consumer whose heartbeat is
 * gone are claimed at once) and keepalive of entries in hand, XAUTOCLAIM of
 * entries idle longer than claimMinIdleMs, and malformed entries
 * dead-lettered at once with the fields bus.DeadLetterQueue writes. The caller owns the ioredis client; the
 * consumer duplicates it for its blocking reads.
 */
export class Consumer {
  private readonly keys: Keys;
  private readonly o: Required<Omit<ConsumerOptions, "onError">> & Pick<ConsumerOptions, "onError">;
  private readonly handlers: { pattern: string; handler: Handler<any> }[] = [];
  private readonly streams = new Set<string>();
  private reader?: Redis | Cluster;
  private notifier?: Redis | Cluster;
  private readerId?: number;
  /** Types announced on the registry channel, not yet subscribed. */
  private readonly announced = new Set<string>();
  private wakeUp?: () => void;
  private running?: Promise<void>;
  private closing = false;
  private lastError?: string;
  /** Entries read and not yet acked, per stream: kept fresh by the keepalive. */
  private readonly inflight = new Map<string, string[]>();
  private timers: NodeJS.Timeout[] = [];
  /** The heartbeat write in progress, awaited by close before it deletes the key. */
  private beating: Promise<void> = Promise.resolve();
  readonly stats: ConsumerStats = { received: 0, handled: 0, failed: 0, deadLettered: 0, claimed: 0, timedOut: 0 };

  constructor(private readonly client: Redis | Cluster, opts: ConsumerOptions) {
    if (!opts.group) throw new TypeError("ConsumerOptions.group is required");
    this.keys = new Keys(opts.streamPrefix);
    this.o = {
      group: opts.group, consumer: opts.consumer ?? `${hostname()}-${process.pid}`, streamPrefix: this.keys.prefix,
      batchSize: opts.batchSize ?? 100, blockMs: opts.blockMs ?? 1000, claimMinIdleMs: opts.claimMinIdleMs ?? 30000,
      startFrom: opts.startFrom ?? "0", resyncMs: opts.resyncMs ?? 5000, maxDeliveries: opts.maxDeliveries ?? 10, deadLetterMaxLen: opts.deadLetterMaxLen ?? DefaultMaxLen, onError: opts.onError,
      handlerTimeoutMs: opts.handlerTimeoutMs || DefaultHandlerTimeoutMs, heartbeatTtlMs: opts.heartbeatTtlMs || DefaultHeartbeatTtlMs,
    };
    for (const k of ["handlerTimeoutMs", "heartbeatTtlMs"] as const) {
      const v = this.o[k];
      if (!Number.isInteger(v) || v < -1 || (k === "heartbeatTtlMs" && v > 0 && v < 4)) throw new RangeError(`ConsumerOptions.${k} ${v}: use a positive number of ms, or -1 for none`);
    }
  }

  private get heartbeatEvery(): number { return this.o.heartbeatTtlMs > 0 ? this.o.heartbeatTtlMs / 4 : 0; }

  /** subscribe adds a handler for an event type or a pattern ("*" one token, ">" the rest). Call before start. */
  subscribe<T = unknown>(typeOrPattern: string, handler: Handler<T>): this {
    validatePattern(typeOrPattern);
    this.handlers.push({ pattern: typeOrPattern, handler });
    return this;
  }

  /**
   * start creates the groups and runs the read loop until close. With a
   * pattern it first subscribes to the registry channel, as the Go bus does
   * (bus/registry.go), so a type first published after start is announced
   * and read from its first entry without waiting for the resync.
   */
  async start(): Promise<void> {
    if (this.running) return;
    this.closing = false;
    this.reader = (this.client as Redis).duplicate();
    if (!("nodes" in this.reader)) {
      // The id lets a notification end a blocked read (CLIENT UNBLOCK) at once.
      const reader = this.reader;
      const fetchId = () => reader.client("ID").then((id) => { this.readerId = Number(id); }, () => { this.readerId = undefined; });
      reader.on("ready", () => { this.readerId = undefined; void fetchId(); });
      await fetchId();
    }
    if (this.handlers.some((h) => isPattern(h.pattern))) {
      this.notifier = (this.client as Redis).duplicate();
      this.notifier.on("message", (_ch: string, t: string) => {
        if (!isValidType(t) || this.streams.has(this.keys.stream(t)) || !this.handlers.some((h) => match(h.pattern, t))) return;
        this.announced.add(t);
        this.wake();
      });
      await this.notifier.subscribe(this.keys.registry());
    }
    await this.refreshStreams();
    if (this.heartbeatEvery > 0) {
      // Timers, not the read loop: a slow handler holds the loop, and the
      // heartbeat must not lapse meanwhile (a Go consumer would take our entries).
      let registered = false;
      const key = this.keys.heartbeat(this.o.group, this.o.consumer);
      const ttl = this.o.heartbeatTtlMs;
      const beat = async () => {
        try {
          // PEXPIRE first, as bus/heartbeat.go: it is allowed while Redis is out of memory.
          if ((await this.client.pexpire(key, ttl)) === 0) await this.client.set(key, "1", "PX", ttl);
          if (!registered) { await this.client.sadd(this.keys.consumers(this.o.group), this.o.consumer); registered = true; }
        } catch (e) { this.report(e); }
      };
      await (this.beating = beat());
      this.timers.push(setInterval(() => { this.beating = beat(); }, this.heartbeatEvery));
    }
    this.timers.push(setInterval(() => void this.keepalive(), Math.max(1, Math.floor(this.o.claimMinIdleMs / 3))));
    this.running = this.loop();
  }

  private report(e: unknown): void {
    if (this.closing) return;
    this.lastError = String(e);
    this.o.onError?.(e);
  }

  /**
   * keepalive resets the idle time of the entries this consumer holds (XCLAIM
   * JUSTID, which does not count a delivery), as the Go subscriber's does, so
   * no consumer claims one a slow handler is still on.
   */
  private async keepalive(): Promise<void> {
    if (this.inflight.size === 0) return;
    const pipe = this.client.pipeline();
    for (const [key, ids] of this.inflight) if (ids.length) pipe.xclaim(key, this.o.group, this.o.consumer, 0, ...ids, "JUSTID");
    try {
      for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
    } catch (e) { this.report(e); }
  }

  /** wake ends the loop's current wait: its sleep, or its blocked XREADGROUP. */
  private wake(): void {
    this.wakeUp?.();
    if (this.readerId !== undefined) this.client.client("UNBLOCK", this.readerId).catch(() => undefined);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((res) => {
      const t = setTimeout(done, ms);
      function done() { clearTimeout(t); res(); }
      this.wakeUp = done;
    });
  }

  private async refreshStreams(): Promise<void> {
    const types = new Set<string>();
    for (const h of this.handlers) if (!isPattern(h.pattern)) types.add(h.pattern);
    if (this.handlers.some((h) => isPattern(h.pattern))) {
      for (const t of await this.client.smembers(this.keys.registry())) {
        if (isValidType(t) && this.handlers.some((h) => match(h.pattern, t))) types.add(t);
      }
    }
    // Types already known at start begin at startFrom; later ones at their
    // first entry, so nothing published before discovery is lost.
    await this.addTypes(types, this.running ? "0" : this.o.startFrom);
  }

  private async addTypes(types: Iterable<string>, from: string): Promise<void> {
    for (const t of types) {
      const key = this.keys.stream(t);
      if (this.streams.has(key)) continue;
      try {
        await this.client.xgroup("CREATE", key, this.o.group, from, "MKSTREAM");
      } catch (e) {
        if (!String(e).includes("BUSYGROUP")) throw e;
      }
      this.streams.add(key);
    }
  }

  private async loop(): Promise<void> {
    let lastClaim = 0;
    let lastDead = 0;
    let lastRefresh = Date.now();
    // With a heartbeat, reads end at least every ttl/4 so dead consumers are looked for that often.
    const block = this.heartbeatEvery > 0 ? Math.max(1, Math.min(this.o.blockMs, Math.floor(this.heartbeatEvery))) : this.o.blockMs;
    while (!this.closing) {
      try {
        if (this.announced.size) {
          const types = [...this.announced];
          this.announced.clear();
          await this.addTypes(types, "0");
        }
        if (Date.now() - lastRefresh > this.o.resyncMs) { await this.refreshStreams(); lastRefresh = Date.now(); }
        if (this.heartbeatEvery > 0 && Date.now() - lastDead >= this.heartbeatEvery) { await this.claimDead(); lastDead = Date.now(); }
        if (Date.now() - lastClaim > this.o.claimMinIdleMs / 3) { await this.claim(); lastClaim = Date.now(); }
        const keys = [...this.streams];
        if (keys.length === 0) { await this.sleep(this.o.blockMs); continue; }
        // Buffers, not strings: data may be binary (data_base64 at the gateway).
        const res = (await this.reader!.callBuffer("XREADGROUP", [
          "GROUP", this.o.group, this.o.consumer, "COUNT", this.o.batchSize, "BLOCK", block,
          "STREAMS", ...keys, ...keys.map(() => ">"),
        ])) as [Buffer, [Buffer, Buffer[]][]][] | null;
        if (!res) continue;
        for (const [key, entries] of res) await this.handleBatch(key.toString(), entries.map(([id, f]) => [id.toString(), f, 1]));
      } catch (e) {
        if (this.closing) break;
        this.lastError = String(e);
        this.o.onError?.(e);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** claim takes entries idle longer than claimMinIdleMs (a crashed consumer's) with XAUTOCLAIM. */
  private async claim(): Promise<void> {
    for (const key of this.streams) {
      const res = (await this.client.callBuffer("XAUTOCLAIM", [key, this.o.group, this.o.consumer, this.o.claimMinIdleMs, "0-0", "COUNT", this.o.batchSize])) as [Buffer, [Buffer, Buffer[] | null][]];
      const entries = res[1].filter((e) => e && e[1]).map(([id, f]) => [id.toString(), f]) as [string, Buffer[]][];
      if (entries.length === 0) continue;
      this.stats.claimed += entries.length;
      const pend = (await this.client.xpending(key, this.o.group, entries[0][0], entries[entries.length - 1][0], entries.length, this.o.consumer)) as [string, string, number, number][];
      const count = new Map(pend.map((p) => [p[0], Number(p[3])]));
      await this.handleBatch(key, entries.map(([id, f]) => [id, f, count.get(id) ?? 2]));
    }
  }

  /**
   * claimDead claims at once the pending entries of the group's consumers
   * whose heartbeat is gone, as bus/heartbeat.go's claimDead: SMEMBERS of the
   * consumer set, EXISTS of each other name's key, then XPENDING for that
   * consumer and XCLAIM with min-idle ttl/4 (so two survivors do not take an
   * entry from each other); a dead name that holds nothing leaves the set.
   */
  private async claimDead(): Promise<void> {
    const set = this.keys.consumers(this.o.group);
    const names = await this.client.smembers(set);
    if (names.length <= 1) return;
    const others = names.filter((n) => n !== this.o.consumer);
    const pipe = this.client.pipeline();
    for (const n of others) pipe.exists(this.keys.heartbeat(this.o.group, n));
    const res = (await pipe.exec()) ?? [];
    for (let i = 0; i < others.length; i++) {
      const [err, exists] = res[i] ?? [];
      if (err || Number(exists) !== 0) continue;
      if ((await this.claimFrom(others[i])) === 0) await this.client.srem(set, others[i]);
    }
  }

  /** claimFrom claims, on every stream, up to batchSize entries pending for dead and handles them; returns how many it saw pending. */
  private async claimFrom(dead: string): Promise<number> {
    let seen = 0;
    for (const key of this.streams) {
      const pend = (await this.client.xpending(key, this.o.group, "-", "+", this.o.batchSize, dead)) as [string, string, number, number][];
      if (pend.length === 0) continue;
      seen += pend.length;
      const res = (await this.client.callBuffer("XCLAIM", [key, this.o.group, this.o.consumer, Math.floor(this.heartbeatEvery), ...pend.map((p) => p[0])])) as ([Buffer, Buffer[] | null] | null)[];
      // A trimmed entry comes back as nil (or not at all) and leaves the PEL.
      const entries = res.filter((e): e is [Buffer, Buffer[]] => !!e && !!e[1]).map(([id, f]) => [id.toString(), f] as [string, Buffer[]]);
      if (entries.length === 0) continue;
      this.stats.claimed += entries.length;
      const count = new Map(pend.map((p) => [p[0], Number(p[3]) + 1]));
      await this.handleBatch(key, entries.map(([id, f]) => [id, f, count.get(id) ?? 2]));
    }
    return seen;
  }

  /** runHandler runs one handler under handlerTimeoutMs. */
  private async runHandler(h: Handler<any>, ev: Event): Promise<void> {
    const ac = new AbortController();
    const ms = this.o.handlerTimeoutMs;
    if (ms <= 0) return h(ev, ac.signal);
    let timer: NodeJS.Timeout | undefined;
    const work = Promise.resolve().then(() => h(ev, ac.signal));
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => { const e = new HandlerTimeoutError(ms); ac.abort(e); reject(e); }, ms);
    });
    try {
      await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
      work.catch(() => undefined); // a late failure of a timed-out handler is not unhandled
    }
  }

  private async handleBatch(key: string, entries: [string, Buffer[], number][]): Promise<void> {
    const topic = key.slice(this.keys.prefix.length);
    const held = entries.map(([id]) => id);
    this.inflight.set(key, [...(this.inflight.get(key) ?? []), ...held]);
    try {
      await this.handleEntries(key, topic, entries);
    } finally {
      const left = (this.inflight.get(key) ?? []).filter((id) => !held.includes(id));
      if (left.length) this.inflight.set(key, left); else this.inflight.delete(key);
    }
  }

  private async handleEntries(key: string, topic: string, entries: [string, Buffer[], number][]): Promise<void> {
    const ack: string[] = [];
    for (const [id, flat, delivery] of entries) {
      this.stats.received++;
      const fields: Record<string, string> = {};
      const rawFields: Record<string, Buffer> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) { const k = flat[i].toString(); fields[k] = flat[i + 1].toString("utf8"); rawFields[k] = flat[i + 1]; }
      const bad = this.malformed(topic, fields);
      if (bad) {
        await this.deadLetter(topic, id, delivery, fields, bad);
        ack.push(id);
        continue;
      }
      if (fields.redrivegroup && fields.redrivegroup !== this.o.group) { ack.push(id); continue; }
      const attributes: Record<string, string> = {};
      for (const [k, v] of Object.entries(fields)) if (k !== "data" && !k.startsWith("_eventbus_")) attributes[k] = v;
      const raw = rawFields.data ?? Buffer.alloc(0);
      let data: unknown;
      if (raw.length > 0 && isJSONContentType(fields.datacontenttype ?? "application/json")) {
        try { data = JSON.parse(raw.toString("utf8")); } catch { await this.deadLetter(topic, id, delivery, fields, `invalid event: data is not valid JSON but datacontenttype is ${JSON.stringify(fields.datacontenttype ?? "application/json")}`, raw); ack.push(id); continue; }
      }
      const ev: Event = {
        id: fields.id, type: fields.type, source: fields.source, specversion: fields.specversion, time: fields.time,
        datacontenttype: fields.datacontenttype, subject: fields.subject, data, raw, attributes, streamId: id, delivery,
      };
      try {
        for (const h of this.handlers) if (match(h.pattern, topic)) await this.runHandler(h.handler, ev);
        this.stats.handled++;
        ack.push(id);
      } catch (e) {
        this.stats.failed++;
        if (e instanceof HandlerTimeoutError) this.stats.timedOut++;
        this.lastError = String(e);
        this.o.onError?.(e);
        if (this.o.maxDeliveries > 0 && delivery >= this.o.maxDeliveries) {
          const msg = e instanceof Error ? e.message : String(e);
          await this.deadLetter(topic, id, delivery, fields, `handler failed on delivery ${delivery} (maxDeliveries ${this.o.maxDeliveries}): ${msg}`, raw);
          ack.push(id);
        }
      }
    }
    if (ack.length) await this.client.xack(key, this.o.group, ...ack);
  }

  private malformed(topic: string, f: Record<string, string>): string | null {
    const missing = required.filter((a) => !f[a]);
    if (missing.length) return "missing required attribute(s) " + missing.join(", ");
    if (!isValidType(f.type)) return `invalid event type ${JSON.stringify(f.type)}`;
    if (f.type !== topic) return `type ${JSON.stringify(f.type)} differs from its stream's ${JSON.stringify(topic)}`;
    return null;
  }

  /**
   * deadLetter writes what bus.DeadLetterQueue.Add writes: for a malformed
   * entry (the Go subscriber's malformed message) its id and the whole raw
   * entry as JSON data, with dlq_malformed; for an event whose data is not
   * JSON (the Go validation middleware's refusal) or whose handler failed
   * maxDeliveries times, its attributes and data.
   * Then the dlq_ fields, so `eventbus dlq` lists it.
   */
  private async deadLetter(topic: string, streamId: string, delivery: number, f: Record<string, string>, reason: string, raw?: Buffer): Promise<void> {
    const flat: (string | Buffer)[] = [];
    if (raw) {
      for (const [k, v] of Object.entries(f)) {
        if (k.startsWith("_eventbus_") || k.startsWith("dlq_") || k === "redrivegroup" || k === "data") continue;
        flat.push(k, v);
      }
      flat.push("data", raw);
    } else {
      flat.push("id", f.id || crypto.randomUUID(), "data", JSON.stringify(f));
    }
    flat.push(
      "dlq_reason", raw ? reason : "malformed event: " + reason, "dlq_handler", "", "dlq_group", this.o.group,
      "dlq_topic", topic, "dlq_attempts", raw ? "1" : "0", "dlq_delivery", String(delivery), "dlq_stream_id", streamId,
      "dlq_time", new Date().toISOString(),
    );
    if (!raw) flat.push("dlq_malformed", reason);
    await this.client.xadd(this.keys.deadLetters(), "MAXLEN", "~", this.o.deadLetterMaxLen, "*", ...flat);
    this.stats.deadLettered++;
  }

  /** health reports whether Redis answers and the loop runs, as the old client's healthCheck. */
  async health(): Promise<{ healthy: boolean; redis: boolean; running: boolean; streams: number; lastError?: string }> {
    let redis = false;
    try { redis = (await this.client.ping()) === "PONG"; } catch { /* not reachable */ }
    const running = !!this.running && !this.closing;
    return { healthy: redis && running, redis, running, streams: this.streams.size, lastError: this.lastError };
  }

  /** close stops the loop after the batch in hand; idempotent. The caller's client stays open. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.reader?.disconnect();
    this.notifier?.disconnect();
    this.wakeUp?.();
    await this.running?.catch(() => undefined);
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.beating; // else its SET could come after the DEL
    if (this.heartbeatEvery > 0) {
      // As the Go subscriber: the key goes once the batch in hand is done, so
      // the group's other consumers take at once what this one leaves pending.
      await this.client.del(this.keys.heartbeat(this.o.group, this.o.consumer)).catch(() => undefined);
    }
  }
}
