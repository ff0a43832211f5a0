/** MaxTypeLength is the longest event type accepted, in bytes (as bus.MaxTypeLength). */
export const MaxTypeLength = 255;

const tokenRe = /^[a-z0-9_-]+$/;

function check(s: string, wildcards: boolean): string | null {
  if (s === "") return "must not be empty";
  if (new TextEncoder().encode(s).length > MaxTypeLength) return `is longer than ${MaxTypeLength} bytes`;
  const toks = s.split(".");
  for (let i = 0; i < toks.length; i++) {
    const tok = toks[i];
    if (tok === "") return "empty token: dots must separate non-empty tokens";
    if (wildcards && tok === "*") continue;
    if (wildcards && tok === ">") {
      if (i !== toks.length - 1) return '">" may only be the last token';
      continue;
    }
    if (!tokenRe.test(tok)) return `token ${JSON.stringify(tok)} must match [a-z0-9_-]+`;
  }
  return null;
}

/** validateType throws unless t is a valid event type (the Go bus.ValidateType rules). */
export function validateType(t: string): void {
  const e = check(t, false);
  if (e) throw new TypeError(`invalid event type ${JSON.stringify(t)}: ${e}`);
}

/** validatePattern throws unless p is a valid subscription pattern ("*" one token, ">" last, one or more). */
export function validatePattern(p: string): void {
  const e = check(p, true);
  if (e) throw new TypeError(`invalid pattern ${JSON.stringify(p)}: ${e}`);
}

/** isValidType reports whether t is a valid event type. */
export const isValidType = (t: string): boolean => check(t, false) === null;
/** isValidPattern reports whether p is a valid pattern. */
export const isValidPattern = (p: string): boolean => check(p, true) === null;

/** isPattern reports whether s has a wildcard token. */
export const isPattern = (s: string): boolean => s.split(".").some((t) => t === "*" || t === ">");

/** match reports whether event type t matches pattern p (both assumed valid), as bus.Match. */
export function match(p: string, t: string): boolean {
  const pt = p.split(".");
  const tt = t.split(".");
  for (let i = 0; i < pt.length; i++) {
    if (pt[i] === ">") return i === pt.length - 1 && tt.length > i;
    if (i >= tt.length) return false;
    if (pt[i] !== "*" && pt[i] !== tt[i]) return false;
  }
  return pt.length === tt.length;
}
