/** Wire constants and keys of docs/wire-format.md, shared by the Node publisher and consumer. */
export const SpecVersion = "1.0";
export const DefaultStreamPrefix = "events:";
export const DefaultMaxLen = 100_000;
export const DefaultContentType = "application/json";

/** Event is one CloudEvent as the bus stores it: attributes plus data bytes. */
export interface Event<T = unknown> {
  id: string;
  type: string;
  source: string;
  specversion: string;
  time?: string;
  datacontenttype?: string;
  subject?: string;
  /** Decoded JSON data when datacontenttype is JSON, else undefined (see raw). */
  data?: T;
  /** The data field as bytes. */
  raw: Buffer;
  /** Every attribute/extension, as written (traceparent, correlationid, room, ...). */
  attributes: Record<string, string>;
  /** The Redis stream entry id. */
  streamId: string;
  /** Redis delivery count for this group (1 the first time). */
  delivery: number;
}

/** Keys derives the bus's Redis keys from a stream prefix (bus.Config). */
export class Keys {
  constructor(readonly prefix: string = DefaultStreamPrefix) {}
  stream(type: string): string { return this.prefix + type; }
  registry(): string { return this.prefix + "$types"; }
  push(): string { return this.prefix + "$push"; }
  deadLetters(): string { return this.prefix + "$dlq"; }
  /**
   * bus.Config.DedupKey: records that the event with id was written to the
   * stream key stream (hash-tagged to it: one cluster slot), for the dedup window.
   */
  dedup(stream: string, id: string): string { return this.prefix + "$dedup:{" + stream + "}:" + id; }
  /** bus.Config.HeartbeatKey: present while consumer of group is alive. */
  heartbeat(group: string, consumer: string): string { return this.prefix + "$hb:" + group + ":" + consumer; }
  /** bus.Config.ConsumersKey: the names of group's consumers that keep a heartbeat. */
  consumers(group: string): string { return this.prefix + "$consumers:" + group; }
  /** The set of every schedule key (bus.Config.SchedulesKey). */
  schedules(): string { return this.prefix + "$scheduled"; }
}

/** isJSONContentType mirrors bus.IsJSONContentType. */
export function isJSONContentType(ct: string): boolean {
  const mt = ct.split(";")[0].trim().toLowerCase();
  return mt === "application/json" || mt.endsWith("+json");
}
