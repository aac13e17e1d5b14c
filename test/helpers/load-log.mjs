/**
 * `node --import ./load-log.mjs …`: appends the URL of every ES module the process loads to the
 * file named by LOAD_LOG, one a line. The same file is the hooks module: imported on the main
 * thread it registers itself, and Node runs its `load` hook on the loader thread.
 */
import { appendFileSync } from 'node:fs';
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

if (isMainThread) register(import.meta.url);

/** Records `url`, then loads it as the next loader (tsx, or Node itself) would. */
export async function load(url, context, nextLoad) {
  appendFileSync(process.env.LOAD_LOG, `${url}\n`);
  return nextLoad(url, context);
}
