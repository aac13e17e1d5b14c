/**
 * --verify in place. Before the pass, a sha256 per 8 MiB chunk of every byte the pass must not
 * change (outside the ranges it will discard and outside volumes the mount engine will trim,
 * except the protected structures inside those),
 * and the set of those bytes that already read as zero; after the pass (and the qcow2 refcount
 * pass), the image served read-only again: the same bytes hash the same, the kept zeros and the
 * discarded ranges read as zero.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunContext } from '../context.js';
import { ExtentSet, type Range } from '../disk/extent-set.js';
import type { BlockSource } from '../disk/types.js';
import { readZeroExtents } from '../disk/zero-map.js';
import { engineById } from '../engines/registry.js';
import type { VolumePlan } from '../plan/plan-volumes.js';
import { zeroingRanges } from '../modes/volume-pass.js';
import type { NotVerified, VerifyReport } from '../report/types.js';
import { verifyError } from './error.js';
import { openImage } from './serve.js';
import { corruptForTest } from './test-hook.js';
import { firstNonZero, spanOf, walkChunks, within, type Finding } from './walk.js';

/** What was true before the pass. */
export interface InPlaceBaseline {
  readonly sizeBytes: number;
  /** Ranges the pass discards: they must read as zero after it. */
  readonly zeroed: ExtentSet;
  /** Bytes the pass must not change that read as zero before: they must still. */
  readonly keptZero: ExtentSet;
  /** The other bytes the pass must not change, hashed per chunk. */
  readonly hashed: ExtentSet;
  /** Chunk start → sha256 (hex) of the hashed bytes in that chunk, in order. */
  readonly digests: ReadonlyMap<number, string>;
  readonly notVerified: readonly NotVerified[];
  readonly volumes: readonly { readonly name: string; readonly range: Range }[];
  readonly ms: number;
}

/** Reads what the pass must not change, before it runs. */
export async function readInPlaceBaseline(device: BlockSource, plans: readonly VolumePlan[], signal: AbortSignal): Promise<InPlaceBaseline> {
  const started = performance.now();
  // Engines that write into the disk mount it (the mount engine, the appliance): a replayed journal changes used blocks.
  const mounted = plans.filter((p) => p.engine !== undefined && engineById(p.engine).needsOverlay);
  const zeroed = ExtentSet.from(plans.flatMap((p) => zeroingRanges(p).ranges));
  // A mounted volume's partition-table and LVM structures are still checked: the pass writes them back.
  const mountedBytes = mounted.map((p) => ExtentSet.of(p.volume.offsetBytes, p.volume.sizeBytes).subtract(p.protectedRanges));
  const skipped = mountedBytes.reduce((all, one) => all.union(one), zeroed);
  const keptZero: Range[] = [];
  const hashed: Range[] = [];
  const digests = new Map<number, string>();
  await walkChunks({ sizeBytes: device.sizeBytes, signal }, async (window) => {
    const zeroBefore = await readZeroExtents(device, window.start, window.end - window.start);
    const unchanged = ExtentSet.of(window.start, window.end - window.start).subtract(skipped);
    // A loop, not push(...ranges): a fragmented window can hold more ranges than a call takes arguments.
    for (const r of unchanged.intersect(zeroBefore).ranges) keptZero.push(r);
    const toHash = unchanged.subtract(zeroBefore);
    for (const r of toHash.ranges) hashed.push(r);
    return async (chunk) => {
      const digest = await hashChunk(device, within(toHash, chunk));
      if (digest) digests.set(chunk.start, digest);
      return undefined;
    };
  });
  return {
    sizeBytes: device.sizeBytes,
    zeroed,
    keptZero: ExtentSet.from(keptZero),
    hashed: ExtentSet.from(hashed),
    digests,
    notVerified: mounted.map((p) => ({ name: p.volume.name, reason: 'mounted' })),
    volumes: plans.map((p) => ({ name: p.volume.name, range: { start: p.volume.offsetBytes, end: p.volume.offsetBytes + p.volume.sizeBytes } })),
    ms: performance.now() - started,
  };
}

/** What is wrong after the pass. */
export interface InPlaceFinding extends Finding {
  readonly kind: 'changed' | 'not-zero';
  /** 'changed': the end of the hashed bytes of the chunk whose hash differs (offsetBytes is their start). */
  readonly endBytes?: number;
}

/**
 * Serves the image read-only after the pass and checks it against the baseline; throws
 * VERIFY_FAILED naming the first wrong place and its volume.
 */
export async function verifyInPlace(ctx: RunContext, baseline: InPlaceBaseline, file: string, format: string): Promise<VerifyReport> {
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'sparsify-'));
  try {
    await corruptForTest(ctx, file, format, dir);
    await using image = await openImage(ctx, { file, format, dir });
    const finding = await findInPlaceChange(image.device, baseline, ctx.signal);
    if (finding) throw verifyError(describe(finding, baseline), 'the image was changed in place: check its filesystems (fsck) before use, and please report this with the output of -v');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const identicalBytes = baseline.hashed.totalBytes + baseline.keptZero.totalBytes;
  return {
    checkedBytes: identicalBytes + baseline.zeroed.totalBytes,
    identicalBytes,
    zeroBytes: baseline.zeroed.totalBytes,
    ms: Math.round(baseline.ms + performance.now() - started),
    ok: true,
    notVerified: baseline.notVerified,
  };
}

/** The first place where the image after the pass is not what the baseline says it must be. */
export function findInPlaceChange(after: BlockSource, b: InPlaceBaseline, signal: AbortSignal): Promise<InPlaceFinding | undefined> {
  const mustBeZero = b.zeroed.union(b.keptZero);
  return walkChunks({ sizeBytes: b.sizeBytes, signal }, async (window) => {
    const zeroAfter = await readZeroExtents(after, window.start, window.end - window.start);
    const zeroToRead = within(mustBeZero, window).subtract(zeroAfter);
    const hashed = within(b.hashed, window);
    return async (chunk) => {
      const zero = within(zeroToRead, chunk);
      const span = spanOf(zero);
      if (span) {
        const bytes = await after.read(span.start, span.end - span.start);
        for (const r of zero.ranges) {
          const at = firstNonZero(bytes, r.start - span.start, r.end - span.start);
          if (at >= 0) return { offsetBytes: span.start + at, kind: 'not-zero' };
        }
      }
      const toHash = within(hashed, chunk);
      const digest = await hashChunk(after, toHash);
      if (digest !== b.digests.get(chunk.start)) {
        const span = spanOf(toHash) ?? chunk;
        return { offsetBytes: span.start, endBytes: span.end, kind: 'changed' };
      }
      return undefined;
    };
  });
}

/** sha256 of the bytes of `ranges` (one chunk's worth), read as one span; undefined when empty. */
async function hashChunk(device: BlockSource, ranges: ExtentSet): Promise<string | undefined> {
  const span = spanOf(ranges);
  if (!span) return undefined;
  const bytes = await device.read(span.start, span.end - span.start);
  const hash = createHash('sha256');
  for (const r of ranges.ranges) hash.update(bytes.subarray(r.start - span.start, r.end - span.start));
  return hash.digest('hex');
}

function describe(f: InPlaceFinding, b: InPlaceBaseline): string {
  if (f.kind === 'changed') {
    const where = placesOf(b, within(b.hashed, { start: f.offsetBytes, end: f.endBytes! }));
    return `--verify: bytes the pass must not change were changed, between byte offsets ${f.offsetBytes} and ${f.endBytes} (${where})`;
  }
  const where = placesOf(b, ExtentSet.of(f.offsetBytes, 1));
  const why = b.zeroed.covers(f.offsetBytes, f.offsetBytes + 1) ? 'the pass discarded it' : 'it read as zero before the pass';
  return `--verify: byte offset ${f.offsetBytes} (${where}) does not read as zero, but ${why}`;
}

/** The innermost volumes (a logical volume, not its PV) holding any of `bytes`, and whether some lie outside every volume. */
function placesOf(b: InPlaceBaseline, bytes: ExtentSet): string {
  const bySize = [...b.volumes].sort((x, y) => x.range.end - x.range.start - (y.range.end - y.range.start));
  const names: string[] = [];
  let left = bytes;
  for (const v of bySize) {
    const range = ExtentSet.of(v.range.start, v.range.end - v.range.start);
    if (left.intersect(range).isEmpty) continue;
    names.push(v.name);
    left = left.subtract(range);
  }
  const places = names.map((n) => `on ${n}`);
  if (!left.isEmpty) places.push('outside every volume');
  return places.join(', ');
}
