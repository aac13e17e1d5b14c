/**
 * --keys-from-stdin on a terminal: the decision (prompt only on a terminal, echo only with
 * --echo-keys), then the real thing under a pseudo-terminal made by script(1): the key typed is
 * not echoed back by the terminal, or is with --echo-keys, and the key read is what was typed.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { keyPromptFor } from '../../../src/keys/key-prompt.js';
import { REPO_ROOT } from '../../helpers/image.js';

describe('keyPromptFor', () => {
  it('prompts only when stdin is a terminal; echo only with --echo-keys', () => {
    expect(keyPromptFor(false, false)).toBeUndefined();
    expect(keyPromptFor(false, true)).toBeUndefined();
    expect(keyPromptFor(true, false)).toEqual({ echo: false });
    expect(keyPromptFor(true, true)).toEqual({ echo: true });
  });
});

const TYPED = 'typed-Secret-42';
const DRIVER = join(REPO_ROOT, 'test', 'unit', 'keys', 'key-prompt-driver.ts');

/** Runs the driver on a pseudo-terminal, types TYPED once the prompt shows; everything the terminal showed. */
function typeKeyOnTerminal(extra: string[]): Promise<string> {
  const command = [process.execPath, '--import', 'tsx', DRIVER, ...extra].map((a) => `'${a}'`).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    let shown = '';
    let typed = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      shown += chunk.toString();
      if (!typed && shown.includes('Enter key or passphrase ("/dev/sda2"):')) {
        typed = true;
        // Typed after the prompt, as a person would: the terminal mode is set by then.
        setTimeout(() => child.stdin.write(`${TYPED}\r`), 200);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      child.stdin.destroy();
      if (code === 0) resolve(shown);
      else reject(new Error(`script exited ${code}:\n${shown}`));
    });
  });
}

describe('--keys-from-stdin on a terminal', () => {
  const hex = Buffer.from(TYPED).toString('hex');

  it('the key typed is not echoed, and is the key read', async () => {
    const shown = await typeKeyOnTerminal([]);
    expect(shown).toContain(`key hex ${hex}`);
    expect(shown).not.toContain(TYPED);
  }, 30_000);

  it('with --echo-keys the key typed is echoed', async () => {
    const shown = await typeKeyOnTerminal(['--echo-keys']);
    expect(shown).toContain(`key hex ${hex}`);
    expect(shown).toContain(TYPED);
  }, 30_000);
});
