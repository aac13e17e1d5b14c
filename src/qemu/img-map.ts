/**
 * `qemu-img map --output=json`: which ranges of an image its own top layer holds, and which are
 * allocated anywhere in its backing chain. qemu's output is untrusted: every field is checked.
 */
import { resolve } from 'node:path';
import type { RunContext } from '../context.js';
import { ExtentSet, type Range } from '../disk/extent-set.js';
import { SparsifyError } from '../errors.js';
import { runTool } from '../util/run.js';

/** What the layers of a chain hold, by byte range of the virtual disk. */
export interface LayerMap {
  /** Allocated in the image itself (data or zero clusters): depth 0 and present. */
  readonly top: ExtentSet;
  /** Allocated in some layer of the chain (the image or a backing file below it). */
  readonly present: ExtentSet;
}

/**
 * Reads the layer map of `path`. `forceShare` (-U) only for a file of our own that a daemon of
 * this run holds open writable and has flushed (the copy's overlay): every other image keeps
 * qemu's locking.
 */
export async function readLayerMap(ctx: RunContext, path: string, format: string, opts: { forceShare?: boolean } = {}): Promise<LayerMap> {
  const args = ['map', '--output=json', '-f', format, ...(opts.forceShare ? ['-U'] : []), resolve(path)];
  const { stdout } = await runTool(ctx, 'qemu-img', args);
  return parseLayerMap(stdout);
}

/**
 * Decodes qemu-img map's JSON (qemu-img(1), "map"): one entry per run with `start`, `length`,
 * `depth` (0: the image itself; n: the n-th backing file; the chain's length: nowhere) and
 * `present` (allocated in some layer; older qemu lacks it: data or a zero cluster above the end).
 */
export function parseLayerMap(stdout: string): LayerMap {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch (err) {
    throw badMap(`not JSON (${(err as Error).message})`, err);
  }
  if (!Array.isArray(parsed)) throw badMap('not a list');
  const top: Range[] = [];
  const present: Range[] = [];
  parsed.forEach((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null) throw badMap(`entry ${i} is not an object`);
    const e = entry as Record<string, unknown>;
    const start = e.start;
    const length = e.length;
    const depth = e.depth;
    if (!isCount(start) || !isCount(length) || !isCount(depth)) throw badMap(`entry ${i} lacks start, length or depth`);
    const isPresent = typeof e.present === 'boolean' ? e.present : e.data === true || depth === 0;
    if (!isPresent) return;
    const range = { start, end: start + length };
    present.push(range);
    if (depth === 0) top.push(range);
  });
  return { top: ExtentSet.from(top), present: ExtentSet.from(present) };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function badMap(why: string, cause?: unknown): SparsifyError {
  return new SparsifyError('TOOL_FAILED', `qemu-img map gave output sparsify cannot read: ${why}`, { cause });
}
