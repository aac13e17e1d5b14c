/**
 * The keys of one run, looked up per encrypted volume as libguestfs does (keys.c get_keys):
 * every --key whose ID is the volume's name, its LUKS UUID or `all`, in command-line order;
 * when none matches and --keys-from-stdin was given, the next line of stdin (on a terminal, a
 * prompt: key-prompt.ts). Key files are
 * read when a volume needs them, first line only, as libguestfs reads them.
 */
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { SparsifyError } from '../errors.js';
import { keyPromptFor, promptKey } from './key-prompt.js';
import { Secret } from './secret.js';
import type { KeyRequest } from './selector.js';

/** Gives the candidate keys of one volume; empty when the user gave none for it. */
export interface KeyStore {
  keysFor(volumeName: string, luksUuid: string): Promise<Secret[]>;
}

/** The bytes of the first line, without its newline (libguestfs read_first_line_from_file). */
function firstLine(bytes: Uint8Array): Uint8Array {
  const end = bytes.indexOf(0x0a);
  return end < 0 ? bytes : bytes.subarray(0, end);
}

/**
 * A key store over the request; `stdin` is where --keys-from-stdin reads (process.stdin by
 * default). On a terminal each key is prompted for on `promptTo`, echo off unless --echo-keys.
 */
export function openKeyStore(request: KeyRequest, stdin: Readable = process.stdin, promptTo: Writable = process.stderr): KeyStore {
  let lines: AsyncIterator<string> | undefined;
  const prompt = keyPromptFor((stdin as { isTTY?: boolean }).isTTY === true, request.echoKeys === true);
  const nextStdinLine = async (volumeName: string): Promise<Secret[]> => {
    if (prompt) return [new Secret(await promptKey(volumeName, prompt, stdin, promptTo))];
    lines ??= createInterface({ input: stdin, crlfDelay: Infinity, terminal: false })[Symbol.asyncIterator]();
    const next = await lines.next();
    if (next.done) {
      throw new SparsifyError('USAGE', `--keys-from-stdin: no line left on stdin for the key of ${volumeName}`, {
        hint: 'give one key per line, one line per encrypted volume, in disk order',
      });
    }
    return [new Secret(next.value)];
  };
  return {
    async keysFor(volumeName, luksUuid) {
      const matching = request.selectors.filter((s) => s.id === 'all' || s.id === volumeName || (luksUuid !== '' && s.id === luksUuid));
      if (matching.length === 0) return request.fromStdin ? nextStdinLine(volumeName) : [];
      const keys: Secret[] = [];
      for (const s of matching) {
        if (s.source.kind === 'string') {
          keys.push(s.source.secret);
          continue;
        }
        const path = s.source.path;
        const bytes = await readFile(path).catch((error: unknown) => {
          throw new SparsifyError('BAD_PATH', `--key ${s.id}:file:${path}: cannot read the key file`, { cause: error });
        });
        keys.push(new Secret(firstLine(bytes)));
      }
      return keys;
    },
  };
}
