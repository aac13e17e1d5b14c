/**
 * A key or passphrase held so that it cannot leak by accident: printing it, logging it,
 * JSON.stringify or util.inspect all give "[redacted]"; only `bytes()` gives it out.
 */
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

export class Secret {
  readonly #bytes: Uint8Array;

  constructor(bytes: Uint8Array | string) {
    this.#bytes = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : Uint8Array.from(bytes);
  }

  /** The key itself, for the KDF; never for display. */
  bytes(): Uint8Array {
    return this.#bytes;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
