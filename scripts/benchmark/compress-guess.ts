/**
 * How often --compress's incompressible guess (src/qcow2/compress-entropy.js) is wrong on an
 * image, and what it costs: every non-zero 64 KiB cluster of a raw image is guessed, then
 * compressed as qemu does (zlib: raw deflate level 6, window bits 12, memLevel 9; zstd: level 3)
 * to see whether qemu would have stored it compressed, and at what size.
 *
 *   node --import tsx scripts/benchmark/compress-guess.ts IMAGE.raw [EVERY]
 *
 * EVERY (default 1) looks at one cluster in EVERY. Prints, per algorithm and for the threshold
 * in use and a few others: clusters guessed incompressible, those of them the compressor would
 * have made smaller (wrong guesses) and the bytes that costs, the stored total with and without
 * the guess, and the seconds spent in the guess and in the compressor (one thread).
 */
const THRESHOLDS = [7.8, 7.85, 7.9, INCOMPRESSIBLE_BITS_PER_BYTE, 7.97];
import { createRequire } from 'node:module';
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import { byteEntropy, INCOMPRESSIBLE_BITS_PER_BYTE } from '../../src/qcow2/compress-entropy.js';
import { zstdModulePath } from '../../src/qcow2/compressed-sink.js';

const CLUSTER = 64 * 1024;

interface Tally {
  clusters: number;
  guessed: number;
  wrong: number;
  lostBytes: number;
  /** Stored bytes as qemu decides (compressed when smaller than a cluster). */
  qemuBytes: number;
  /** Stored bytes with the guess first. */
  guessBytes: number;
  compressSeconds: number;
  /** Compressor time on the clusters guessed incompressible: what the guess saves. */
  savedSeconds: number;
}

const tally = (): Tally => ({ clusters: 0, guessed: 0, wrong: 0, lostBytes: 0, qemuBytes: 0, guessBytes: 0, compressSeconds: 0, savedSeconds: 0 });

function main(): void {
  const [path, everyText] = process.argv.slice(2);
  if (!path) throw new Error('usage: compress-guess.ts IMAGE.raw [EVERY]');
  const every = Number(everyText ?? 1);
  const zstdPath = zstdModulePath();
  const zstd = zstdPath === undefined ? undefined : (createRequire(import.meta.url)(zstdPath) as { CCtx: new () => { compress(d: Uint8Array, s: Uint8Array, l: number): number } });
  const cctx = zstd ? new zstd.CCtx() : undefined;
  const zstdOut = Buffer.alloc(CLUSTER * 2);
  const counts = new Uint32Array(256);
  const zeros = Buffer.alloc(CLUSTER);
  const buf = Buffer.alloc(CLUSTER);
  const algos: Record<string, { t: Tally[]; run: (c: Buffer) => number }> = {
    zlib: { t: THRESHOLDS.map(tally), run: (c) => deflateRawSync(c, { level: 6, windowBits: 12, memLevel: 9 }).length },
    ...(cctx ? { zstd: { t: THRESHOLDS.map(tally), run: (c: Buffer) => cctx.compress(zstdOut, c, 3) } } : {}),
  };
  let guessSeconds = 0;
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  for (let at = 0, n = 0; at + CLUSTER <= size; at += CLUSTER, n++) {
    if (n % every !== 0) continue;
    readSync(fd, buf, 0, CLUSTER, at);
    if (buf.equals(zeros)) continue;
    const t0 = process.hrtime.bigint();
    const bits = byteEntropy(buf, counts);
    guessSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
    for (const { t: tallies, run } of Object.values(algos)) {
      const t1 = process.hrtime.bigint();
      const packed = run(buf);
      const seconds = Number(process.hrtime.bigint() - t1) / 1e9;
      const stored = packed < CLUSTER ? packed : CLUSTER;
      for (const [k, t] of tallies.entries()) {
      const guess = bits > THRESHOLDS[k]!;
      t.clusters++;
      t.compressSeconds += seconds;
      t.qemuBytes += stored;
      t.guessBytes += guess ? CLUSTER : stored;
      if (guess) {
        t.guessed++;
        t.savedSeconds += seconds;
        if (packed < CLUSTER) {
          t.wrong++;
          t.lostBytes += CLUSTER - packed;
        }
      }
      }
    }
  }
  closeSync(fd);
  const mb = (b: number): string => (b / 1e6).toFixed(1);
  console.log(`${path}: one cluster in ${every}; guess ${guessSeconds.toFixed(2)} s in all`);
  for (const [name, { t: tallies }] of Object.entries(algos)) for (const [k, t] of tallies.entries()) {
    console.log(`${name} > ${THRESHOLDS[k]} bits: ${t.clusters} non-zero clusters, ${t.guessed} guessed incompressible (${((100 * t.guessed) / t.clusters).toFixed(1)} %), `
      + `${t.wrong} of them wrongly (${((100 * t.wrong) / t.clusters).toFixed(2)} % of all), costing ${mb(t.lostBytes)} MB; `
      + `stored ${mb(t.qemuBytes)} MB as qemu decides, ${mb(t.guessBytes)} MB with the guess (+${((100 * (t.guessBytes - t.qemuBytes)) / t.qemuBytes).toFixed(2)} %); `
      + `compressor ${t.compressSeconds.toFixed(2)} s, of which ${t.savedSeconds.toFixed(2)} s on the guessed clusters`);
  }
}

main();
