/**
 * A parser for LVM2's configuration syntax, the text format of VG metadata (lvm.conf(5),
 * "SYNTAX"): `name = value`, sections `name { ... }`, values that are integers, floats, strings
 * in double (or single) quotes with backslash escapes, or flat arrays `[v, v, ...]` of those;
 * `#` starts a comment to the end of the line. Metadata text is untrusted: the parser always
 * advances, bounds its nesting depth and input size, and refuses duplicate names (which entry
 * LVM would believe is not worth guessing).
 */

/** A scalar value: a string, or a number (integer or float). */
export type LvmScalar = string | number;
/** A value: a scalar, a flat array of scalars, or a section. */
export type LvmConfigValue = LvmScalar | readonly LvmScalar[] | LvmConfigSection;

/** A section: its entries in text order. */
export interface LvmConfigSection {
  readonly kind: 'section';
  readonly entries: ReadonlyMap<string, LvmConfigValue>;
}

/** Limits of {@link parseLvmConfig}. */
export interface LvmConfigLimits {
  readonly maxDepth: number;
  readonly maxChars: number;
}

/** Real metadata nests four deep (VG → logical_volumes → LV → segment); lvm.conf about the same. */
const DEFAULT_LVM_CONFIG_LIMITS: LvmConfigLimits = { maxDepth: 16, maxChars: 64 * 1024 * 1024 };

/** A syntax error with where it happened in the text (0-based offset, 1-based line). */
export class LvmConfigError extends Error {
  constructor(
    readonly what: string,
    readonly offset: number,
    readonly line: number,
  ) {
    super(`line ${line}: ${what}`);
    this.name = 'LvmConfigError';
  }
}

/** Characters that end a bare word (names and numbers). */
const DELIMITERS = new Set([...'#={}[],"\'']);
const NUMBER = /^[+-]?(\d+|\d*\.\d+|\d+\.\d*)$/;

/** A piece of untrusted text for an error message: quoted, escaped, at most 40 characters. */
export function quoteText(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

/** Whether a value is a section. */
export function isSection(value: LvmConfigValue | undefined): value is LvmConfigSection {
  return typeof value === 'object' && !Array.isArray(value) && (value as LvmConfigSection).kind === 'section';
}

class Parser {
  private pos = 0;

  constructor(
    private readonly text: string,
    private readonly limits: LvmConfigLimits,
  ) {}

  fail(what: string, at = this.pos): never {
    let line = 1;
    for (let i = 0; i < at && i < this.text.length; i++) if (this.text.charCodeAt(i) === 10) line++;
    throw new LvmConfigError(what, at, line);
  }

  /** Skips whitespace and comments; returns the next character or '' at the end. */
  peek(): string {
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined) return '';
      if (c === '#') {
        const eol = this.text.indexOf('\n', this.pos);
        this.pos = eol < 0 ? this.text.length : eol + 1;
      } else if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') {
        this.pos++;
      } else {
        return c;
      }
    }
  }

  expect(c: string): void {
    if (this.peek() !== c) this.fail(`expected '${c}'${this.found()}`);
    this.pos++;
  }

  found(): string {
    const c = this.peek();
    if (c === '') return ', found the end of the text';
    const code = c.charCodeAt(0);
    return code < 0x20 || code > 0x7e ? `, found byte 0x${code.toString(16).padStart(2, '0')}` : `, found '${c}'`;
  }

  /** A run of characters up to whitespace, a delimiter or a control byte. */
  word(): string {
    const start = this.pos;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos]!;
      const code = c.charCodeAt(0);
      if (code <= 0x20 || code === 0x7f || DELIMITERS.has(c)) break;
      this.pos++;
    }
    return this.text.slice(start, this.pos);
  }

  /** Entries until `}` (nested) or the end of the text (top level). */
  section(depth: number): LvmConfigSection {
    if (depth > this.limits.maxDepth) this.fail(`sections nest deeper than ${this.limits.maxDepth}`);
    const entries = new Map<string, LvmConfigValue>();
    for (;;) {
      const c = this.peek();
      if (c === '' || c === '}') {
        if ((c === '') !== (depth === 0)) this.fail(depth === 0 ? "unexpected '}'" : "missing '}'");
        return { kind: 'section', entries };
      }
      const at = this.pos;
      const name = this.word();
      if (name === '') this.fail(`expected a name${this.found()}`);
      if (entries.has(name)) this.fail(`${quoteText(name)} is defined twice`, at);
      entries.set(name, this.afterName(depth));
    }
  }

  afterName(depth: number): LvmConfigValue {
    if (this.peek() === '{') {
      this.pos++;
      const inner = this.section(depth + 1);
      this.expect('}');
      return inner;
    }
    this.expect('=');
    return this.peek() === '[' ? this.array() : this.scalar();
  }

  array(): LvmScalar[] {
    this.expect('[');
    const items: LvmScalar[] = [];
    if (this.peek() === ']') {
      this.pos++;
      return items;
    }
    for (;;) {
      items.push(this.scalar());
      const c = this.peek();
      if (c !== ']' && c !== ',') this.fail(`expected ',' or ']' in an array${this.found()}`);
      this.pos++;
      if (c === ']') return items;
    }
  }

  scalar(): LvmScalar {
    const c = this.peek();
    if (c === '"' || c === "'") return this.string(c);
    const at = this.pos;
    const word = this.word();
    if (!NUMBER.test(word)) this.fail(word === '' ? `expected a value${this.found()}` : `${quoteText(word)} is not a value`, at);
    const value = Number(word);
    if (word.includes('.') ? !Number.isFinite(value) : !Number.isSafeInteger(value)) {
      this.fail(`number ${word} is out of range`, at);
    }
    return value;
  }

  /** A quoted string; a backslash makes the next character literal (lvm2 escapes `"` and `\`). */
  string(quote: string): string {
    const start = this.pos;
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.text[this.pos++];
      if (c === undefined) this.fail('unterminated string', start);
      if (c === quote) return out;
      if (c === '\\') {
        const next = this.text[this.pos++];
        if (next === undefined) this.fail('unterminated string', start);
        out += next;
      } else {
        out += c;
      }
    }
  }
}

/** Parses LVM2 config text into its top-level section; throws {@link LvmConfigError}. */
export function parseLvmConfig(text: string, limits: LvmConfigLimits = DEFAULT_LVM_CONFIG_LIMITS): LvmConfigSection {
  if (text.length > limits.maxChars) {
    throw new LvmConfigError(`text of ${text.length} bytes is over the ${limits.maxChars}-byte limit`, 0, 1);
  }
  return new Parser(text, limits).section(0);
}
