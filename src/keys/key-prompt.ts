/**
 * --keys-from-stdin on a terminal, as virt-sparsify reads keys (libguestfs common/options/keys.c
 * read_key): a prompt naming the volume, and the key typed not echoed unless --echo-keys. From a
 * pipe or a file, lines are read as they are, with no prompt (key-store.ts).
 *
 * The terminal is read with npm's `read` (what npm itself prompts for passwords with): it puts the
 * terminal in raw mode through readline, so the kernel echoes nothing, and with `silent` mutes
 * readline's own echo; readline keeps line editing (backspace) and restores the mode after.
 */
import type { Readable, Writable } from 'node:stream';
import { read } from 'read';
import { cancelledError } from '../errors.js';

/** How a key is asked for on a terminal. */
export interface KeyPrompt {
  /** --echo-keys: the key typed is shown. */
  readonly echo: boolean;
}

/** The decision: a prompt (echo off unless --echo-keys) only when stdin is a terminal; none for a pipe or a file. */
export function keyPromptFor(stdinIsTerminal: boolean, echoKeys: boolean): KeyPrompt | undefined {
  return stdinIsTerminal ? { echo: echoKeys } : undefined;
}

/** Asks on the terminal `input` for the key of `volumeName`; the prompt (and, with echo, the key) go to `output`. */
export async function promptKey(volumeName: string, prompt: KeyPrompt, input: Readable, output: Writable): Promise<string> {
  try {
    // terminal: true even when output is no terminal (stderr to a file): the input terminal's own echo must go off.
    return await read({ prompt: `Enter key or passphrase ("${volumeName}"):`, silent: !prompt.echo, input, output, terminal: true });
  } catch (err) {
    // ^C at the prompt: readline has the terminal in raw mode, so it comes as its SIGINT, not the process's.
    if (err instanceof Error && err.message === 'canceled') throw cancelledError();
    throw err;
  } finally {
    if (!prompt.echo) output.write('\n');
  }
}
