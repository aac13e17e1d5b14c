/**
 * qemu's `-o` option strings (`key=value,key2=value2`, `,,` for a literal comma): split into
 * pairs and joined back, so that a preset's options and the user's can be merged key by key.
 */

/** One `key=value` (or a bare `key`) of an option string. */
export type OptionPair = readonly [key: string, value: string | undefined];

/** Splits `a=1,b=2`; empty parts are dropped; `,,` is a comma inside a key or value. */
export function parseOptionString(text: string): OptionPair[] {
  const out: OptionPair[] = [];
  for (const part of text.replaceAll(',,', '\0').split(',')) {
    if (part === '') continue;
    const unescape = (s: string): string => s.replaceAll('\0', ',');
    const eq = part.indexOf('=');
    out.push(eq < 0 ? [unescape(part), undefined] : [unescape(part.slice(0, eq)), unescape(part.slice(eq + 1))]);
  }
  return out;
}

/** The inverse of {@link parseOptionString}: commas inside keys and values are doubled again. */
export function formatOptionString(pairs: readonly OptionPair[]): string {
  const escape = (s: string): string => s.replaceAll(',', ',,');
  return pairs.map(([k, v]) => (v === undefined ? escape(k) : `${escape(k)}=${escape(v)}`)).join(',');
}

/** The value of `key` in an option string (the last one given wins, as in qemu), or undefined. */
export function optionValue(text: string | undefined, key: string): string | undefined {
  let value: string | undefined;
  for (const [k, v] of parseOptionString(text ?? '')) if (k === key) value = v ?? '';
  return value;
}
