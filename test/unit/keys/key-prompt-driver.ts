/**
 * Run by key-prompt.test.ts under `script` (a real pseudo-terminal): reads one key with
 * --keys-from-stdin's store on the terminal and prints its hex, never the key itself.
 */
import { openKeyStore } from '../../../src/keys/key-store.js';

const store = openKeyStore({ selectors: [], fromStdin: true, echoKeys: process.argv.includes('--echo-keys') });
const [key] = await store.keysFor('/dev/sda2', '');
process.stdout.write(`key hex ${Buffer.from(key!.bytes()).toString('hex')}\n`);
