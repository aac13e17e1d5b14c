/**
 * virt-sparsify's `--key SELECTOR` (libguestfs common/options/keys.c): `ID:key:STRING` gives a
 * passphrase, `ID:file:FILE` names a file whose first line is the passphrase; ID is a volume
 * name (/dev/sda2, /dev/VG/LV), a LUKS UUID, or `all`. A backslash escapes a colon or a
 * backslash, so that IDs and passphrases may hold colons.
 */
import { SparsifyError } from '../errors.js';
import { Secret } from './secret.js';

/** One parsed --key. */
export interface KeySelector {
  /** Volume name, LUKS UUID, or "all". */
  readonly id: string;
  readonly source: { readonly kind: 'string'; readonly secret: Secret } | { readonly kind: 'file'; readonly path: string };
}

/** What the command line says about keys: the selectors in order, and whether stdin gives more. */
export interface KeyRequest {
  readonly selectors: readonly KeySelector[];
  /** --keys-from-stdin: a volume no selector matches takes the next line of stdin. */
  readonly fromStdin: boolean;
  /** --echo-keys: a key typed at the terminal is shown (off by default). */
  readonly echoKeys?: boolean;
}

/** Splits on colons that no backslash escapes, unescaping `\:` and `\\`. */
function splitFields(text: string): string[] {
  const fields: string[] = [''];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && (text[i + 1] === ':' || text[i + 1] === '\\')) fields[fields.length - 1] += text[++i]!;
    else if (c === ':') fields.push('');
    else fields[fields.length - 1] += c;
  }
  return fields;
}

/**
 * Parses one --key value. The error never repeats the value: it may hold the passphrase.
 */
export function parseKeySelector(text: string): KeySelector {
  const fields = splitFields(text);
  const [id, kind] = fields;
  if (fields.length === 2 && kind === 'clevis') {
    throw new SparsifyError('UNSUPPORTED', `--key ${id}:clevis: Clevis/Tang unlocking is not supported`, {
      hint: 'give the passphrase with --key ID:key:STRING or --key ID:file:FILE',
    });
  }
  const value = fields[2];
  if (fields.length !== 3 || !id || (kind !== 'key' && kind !== 'file') || (kind === 'file' && !value)) {
    throw new SparsifyError('USAGE', '--key takes ID:key:STRING or ID:file:FILE (the value is not shown: it may hold a key)', {
      hint: 'ID is a volume name such as /dev/sda2, a LUKS UUID, or all; escape a colon in it as \\:',
    });
  }
  return kind === 'key' ? { id, source: { kind: 'string', secret: new Secret(value!) } } : { id, source: { kind: 'file', path: value! } };
}
