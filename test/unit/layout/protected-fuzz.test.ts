/**
 * A seeded fuzzer over partition tables: for random MBRs with EBR chains and random GPTs, the
 * protected set covers every structure the reader parsed (and every byte it read), and a copy
 * that zeroes every volume wholly except the protected set still has the same volumes.
 */
import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { readLayout } from '../../../src/layout/read-layout.js';
import type { Layout } from '../../../src/layout/types.js';
import { prng } from '../../helpers/copy-fakes.js';
import { memReader } from './fixtures.js';
import { randomGptDisk, randomMbrDisk, type Generated } from './protected-fixtures.js';

/** Cases per table kind; SPARSIFY_FUZZ_SEED picks another first seed to explore further. */
const CASES = 300;
const FIRST_SEED = Number(process.env.SPARSIFY_FUZZ_SEED ?? 1);

/** The disk as a copy leaves it when every volume is zeroed except `keep`. */
function zeroVolumes(disk: Uint8Array, layout: Layout, keep: ExtentSet): Uint8Array {
  const out = disk.slice();
  for (const v of layout.volumes) {
    for (const r of ExtentSet.of(v.offsetBytes, v.sizeBytes).subtract(keep).ranges) out.fill(0, r.start, r.end);
  }
  return out;
}

const shape = (layout: Layout) =>
  layout.volumes.map((v) => [v.partitionNumber, v.offsetBytes, v.sizeBytes, v.partitionType, v.name]);

/** Layout after a copy, or the message of the error re-reading it threw. */
async function reread(disk: Uint8Array): Promise<Layout | string> {
  return readLayout(memReader(disk)).catch((err: Error) => err.message);
}

/** Checks one generated disk; returns whether zeroing without protection would have lost a volume. */
async function checkCase(g: Generated): Promise<boolean> {
  const reader = memReader(g.disk);
  const layout = await readLayout(reader);
  expect(layout.table).toBe(g.expected.table);
  expect(layout.volumes.map((v) => [v.partitionNumber, v.offsetBytes, v.sizeBytes])).toEqual(g.expected.volumes);
  const prot = layout.protectedRanges;
  for (const s of g.expected.structures) expect(prot.covers(s.start, s.end), `structure ${s.start}–${s.end}`).toBe(true);
  for (const [offset, length] of reader.reads) expect(prot.covers(offset, offset + length), `read ${offset}+${length}`).toBe(true);
  const after = await reread(zeroVolumes(g.disk, layout, prot));
  expect(typeof after === 'string' ? after : { table: after.table, volumes: shape(after) }).toEqual({
    table: layout.table,
    volumes: shape(layout),
  });
  const unprotected = await reread(zeroVolumes(g.disk, layout, ExtentSet.empty));
  return typeof unprotected === 'string' || JSON.stringify(shape(unprotected)) !== JSON.stringify(shape(layout));
}

async function fuzz(generate: (seed: number) => Generated | undefined): Promise<{ cases: number; atRisk: number }> {
  let cases = 0;
  let atRisk = 0;
  for (let seed = FIRST_SEED; seed < FIRST_SEED + CASES; seed++) {
    const g = generate(seed);
    if (!g) continue;
    try {
      if (await checkCase(g)) atRisk++;
    } catch (err) {
      (err as Error).message = `seed ${seed} (SPARSIFY_FUZZ_SEED=${seed} reproduces it first): ${(err as Error).message}`;
      throw err;
    }
    cases++;
  }
  return { cases, atRisk };
}

describe('protected ranges over random partition tables', () => {
  it('MBR with EBR chains: every EBR is protected and every logical partition survives', async () => {
    const { cases, atRisk } = await fuzz((seed) => randomMbrDisk(prng(seed), seed));
    expect(cases).toBe(CASES);
    // The fuzzer must reach the finding: many disks lose a partition when the EBRs are not protected.
    expect(atRisk).toBeGreaterThan(CASES / 5);
  });

  it('GPT with entries and backup anywhere: every copy read is protected and every partition survives', async () => {
    const { cases, atRisk } = await fuzz((seed) => randomGptDisk(prng(seed), seed));
    expect(cases).toBeGreaterThan(CASES * 0.9);
    expect(atRisk).toBeGreaterThan(cases / 5);
  });
});
