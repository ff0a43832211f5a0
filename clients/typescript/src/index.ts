export * from "./topic.js";
export * from "./wire.js";
export * from "./publisher.js";
export * from "./consumer.js";
export * from "./ingress.js";
export { BrowserClient, StreamError, backoff, decodeData, type BrowserClientOptions, type StreamEvent, type Gap } from "./browser.js";
