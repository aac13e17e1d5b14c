/**
 * Progress of a real copy: the total it counts to is the bytes the copy really reads (the
 * --json report's copy.readBytes), not the virtual size, in --machine-readable lines and in the
 * plain lines a non-terminal gets; and the steps before the copy (the mount pass) show none.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { humanBytes } from '../../src/util/size.js';
import { makeRunTmp, runCli } from '../helpers/cli.js';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';

describeIntegration('copy progress on a real image', { tools: ['qemu-img', 'qemu-storage-daemon'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4', 'swap'], size: '512M', fillMiB: 16, garbageMiB: 64, seed: 11 });
    dir = await makeRunTmp();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function copy(name: string, args: string[]) {
    const json = join(dir, `${name}.json`);
    const r = await runCli(['--tmp', dir, '--convert', 'raw', '--json', json, ...args, image.imagePath, join(dir, `${name}.raw`)]);
    expect(r.exitCode, r.stderr).toBe(0);
    return { r, report: await readReport(json) };
  }

  it('--machine-readable: N/D lines count to the bytes read, each followed by a sparsify-progress line', async () => {
    const { r, report } = await copy('mr', ['--machine-readable']);
    const read = report.copy!.readBytes;
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThan(image.manifest.virtualSizeBytes / 4);
    const lines = r.stdout.trim().split('\n');
    const nd = lines.flatMap((l, i) => (/^\d+\/\d+$/.test(l) ? [i] : []));
    expect(nd.length).toBeGreaterThan(1);
    for (const i of nd) {
      const [done, total] = lines[i]!.split('/').map(Number);
      expect(total).toBe(read);
      expect(lines[i + 1]).toMatch(new RegExp(`^sparsify-progress done=${done} total=${total}( rate=\\d+)?( eta=\\d+)?$`));
    }
    expect(lines[nd.at(-1)!]).toBe(`${read}/${read}`);
    expect(lines[nd[0]!]).toBe(`0/${read}`);
  });

  it('plain lines (no terminal) give bytes read of bytes to read, and end at 100%', async () => {
    const { r, report } = await copy('plain', []);
    const read = report.copy!.readBytes;
    const progress = r.stdout.split('\n').filter((l) => / of .* \(\d+%\)/.test(l));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(report.totalMs / 1000) + 2);
    expect(progress.at(-1)).toContain(`${humanBytes(read)} of ${humanBytes(read)} (100%)`);
    expect(progress.every((l) => l.includes(` of ${humanBytes(read)} (`))).toBe(true);
  });

  it('--engine mount: the overlay and trim steps show no progress and no rate, only the copy step does', async () => {
    const { r } = await copy('mount', ['--engine', 'mount']);
    const plain = r.stdout.split('\n');
    const copyAt = plain.findIndex((l) => l.includes('Copy to destination'));
    const trimAt = plain.findIndex((l) => /trimmed/.test(l));
    expect(trimAt).toBeGreaterThan(0);
    expect(copyAt).toBeGreaterThan(trimAt);
    const figures = plain.flatMap((l, i) => (/ of .*\(\d+%\)|\/s\b| left$/.test(l) ? [i] : []));
    expect(figures.length).toBeGreaterThan(0);
    expect(figures.every((i) => i > copyAt)).toBe(true);
    const { r: mr } = await copy('mount-mr', ['--engine', 'mount', '--machine-readable']);
    const lines = mr.stdout.trim().split('\n');
    const copyLine = lines.indexOf('Copy to destination and make sparse');
    expect(lines).toContain('Create overlay file to protect source disk');
    expect(copyLine).toBeGreaterThan(lines.indexOf('Create overlay file to protect source disk'));
    const progressLines = lines.flatMap((l, i) => (/^\d+\/\d+$|^sparsify-progress /.test(l) ? [i] : []));
    expect(progressLines.length).toBeGreaterThan(1);
    expect(progressLines.every((i) => i > copyLine)).toBe(true);
  });
});
