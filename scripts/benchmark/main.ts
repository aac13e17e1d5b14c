/**
 * scripts/bench: sparsify against the strongest settings of its peers on images with little,
 * half and mostly live data, every output kind, runs in rotated order, medians and ratios.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { runCell, type Cell, type RowResult } from './cell.js';
import { checksSettled } from './check.js';
import { DEFAULT_PROFILES, ensureImage, floorSpecOf, PROFILE_NAMES, specOf, type BenchImage, type ProfileName } from './images.js';
import { stopCurrent } from './measure.js';
import { COPY_KINDS, OUTPUT_KINDS, PEER_NAMES, PEERS, type OutputKind, type Peer } from './peers.js';
import { describeImage, formatCell, summarize, TABLE_NOTES, type RowSummary } from './report.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Settings {
  readonly images: readonly ProfileName[];
  readonly inputs: readonly ('raw' | 'qcow2')[];
  readonly outputs: readonly OutputKind[];
  readonly peers: readonly Peer[];
  readonly cells: readonly RegExp[];
  readonly runs: number;
  readonly sizeArg: string;
  readonly fs: readonly string[];
  readonly keep: boolean;
  readonly json?: string;
  readonly benchDir: string;
}

function listOf<T extends string>(what: string, allowed: readonly T[]) {
  return (text: string): T[] => {
    const items = text.split(',').filter((s) => s !== '');
    const bad = items.filter((s) => !allowed.includes(s as T));
    if (bad.length > 0 || items.length === 0) throw new Error(`--${what}: unknown '${bad.join(',')}' (choose from ${allowed.join(',')})`);
    return items as T[];
  };
}

/** "little/*\/zstd" → a whole-id regular expression. */
function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

function parseArgs(argv: readonly string[]): Settings {
  const program = new Command('scripts/bench')
    .description('Times sparsify against virt-sparsify, qemu-img convert -W, nbdcopy and the floor on images with little, half and mostly live data.')
    .option('--images <list>', `image profiles (${PROFILE_NAMES.join(',')}; dirty: ext4 and xfs with journals to replay, and btrfs)`, DEFAULT_PROFILES.join(','))
    .option('--inputs <list>', 'input formats to time (raw,qcow2)', 'qcow2')
    .option('--outputs <list>', `output kinds (${COPY_KINDS.join(',')})`, COPY_KINDS.join(','))
    .option('--in-place', 'add the in-place cell (sparsify --in-place vs virt-sparsify --in-place on a copy)')
    .option('--peers <list>', `peers (${PEER_NAMES.join(',')})`, PEER_NAMES.join(','))
    .option('--cells <globs>', 'only the cells whose id (IMAGE/INPUT/OUTPUT, e.g. half/qcow2/zstd) matches one of these comma-separated globs')
    .option('--runs <n>', 'runs per peer and cell, in rotated order', '3')
    .option('--size <size>', 'virtual size of the bench images', '8G')
    .option('--fs <list>', 'filesystems, GPT', 'ext4,xfs,swap,vfat')
    .option('--quick', 'smoke run (CI, under 3 min): --size 256M --fs ext4,swap,vfat --outputs qcow2,zstd --runs 1, no virt-sparsify unless --peers names it')
    .option('--keep', 'keep the last output of every row')
    .option('--json <file>', 'also write the results as JSON')
    .addHelpText('after', `
Cells: every IMAGE/INPUT/OUTPUT combination selected; in each, every selected peer that can make
that output runs --runs times, round r in the order rotated by r (A B C, B C A, ...).
Peers: sparsify (baseline of the ratios); sparsify-nozero (--no-zero: the copier alone);
virt-sparsify (LIBGUESTFS_BACKEND=direct, force_tcg); qemu-img (convert -W, -c -W for compressed,
-o compression_type=zstd for zstd); qemu-img-m16 (the same with -m 16); nbdcopy (qemu-nbd on both
sides, --destination-is-zero; raw and qcow2 only); floor (qemu-img convert -W of the same image
built with no deleted data: writing the live data once).
Times: wall s is the command alone; after it the bench times a sync (it syncs before each run,
so this writes back only what the run left dirty), and durable s = wall + that sync, the time
until the output is on disk. sparsify fsyncs its output before renaming it into place; qemu-img
convert (cache mode unsafe) and nbdcopy's destination do not, so compare durable s for the
whole cost and wall s for what the user waits for. Each gets its ratio to sparsify.
Exits 1 if a command fails or an output is wrong, 2 on a usage error.

environment:
  BENCH_DIR     images are cached and runs kept here (default /var/tmp/sparsify-bench)
  SPARSIFY_CMD  how to run sparsify (default: node REPO/dist/cli/sparsify.cjs); sparsify rows are
                skipped with a note when dist/cli/sparsify.cjs does not exist`)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .parse(argv, { from: 'user' });
  const o = program.opts<Record<string, string | boolean | undefined>>();
  const quick = o.quick === true;
  const peerList = program.getOptionValueSource('peers') === 'default' && quick
    ? PEER_NAMES.filter((p) => p !== 'virt-sparsify')
    : listOf('peers', PEER_NAMES)(o.peers as string);
  const fromQuick = (name: string, quickValue: string): string =>
    (quick && program.getOptionValueSource(name) === 'default' ? quickValue : (o[name] as string));
  const outputs = listOf('outputs', COPY_KINDS)(fromQuick('outputs', 'qcow2,zstd'));
  const runs = Number(fromQuick('runs', '1'));
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs takes a whole number above 0');
  return {
    images: listOf('images', PROFILE_NAMES)(o.images as string),
    inputs: listOf('inputs', ['raw', 'qcow2'] as const)(o.inputs as string),
    outputs: o.inPlace === true ? [...outputs, 'in-place'] : outputs,
    peers: PEERS.filter((p) => peerList.includes(p.name)),
    cells: typeof o.cells === 'string' ? o.cells.split(',').map(globToRegExp) : [],
    runs,
    sizeArg: fromQuick('size', '256M'),
    fs: fromQuick('fs', 'ext4,swap,vfat').split(','),
    keep: o.keep === true,
    ...(typeof o.json === 'string' ? { json: resolve(o.json) } : {}),
    benchDir: process.env.BENCH_DIR ?? '/var/tmp/sparsify-bench',
  };
}

function requireTools(peers: readonly Peer[]): void {
  const tools = new Set(['qemu-img', ...peers.flatMap((p) => (p.name === 'nbdcopy' ? ['nbdcopy', 'qemu-nbd'] : p.name === 'virt-sparsify' ? ['virt-sparsify'] : []))]);
  if (!existsSync('/usr/bin/time')) throw new Error('/usr/bin/time is missing: apt-get install time');
  for (const tool of tools) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); } catch { throw new Error(`${tool} is missing (run scripts/setup)`); }
  }
}

/** argv that runs sparsify, or a note saying why its rows are skipped. */
function sparsifyCommand(): { argv: string[]; note?: string } {
  if (process.env.SPARSIFY_CMD) return { argv: process.env.SPARSIFY_CMD.split(/\s+/).filter(Boolean) };
  // The command as installed (package.json "bin"), which sizes the thread pool first.
  const cli = join(REPO, 'dist', 'cli', 'sparsify.cjs');
  if (existsSync(cli)) return { argv: [process.execPath, cli] };
  return { argv: [], note: `sparsify skipped: ${cli} does not exist (npm run build, or set SPARSIFY_CMD)` };
}

/** The selected cells, in order: image, then input format, then output kind. */
function planCells(s: Settings): Omit<Cell, 'image' | 'floor'>[] {
  const cells: Omit<Cell, 'image' | 'floor'>[] = [];
  for (const profile of s.images) {
    for (const inputFormat of s.inputs) {
      for (const kind of OUTPUT_KINDS.filter((k) => s.outputs.includes(k))) {
        const id = `${profile}/${inputFormat}/${kind}`;
        if (s.cells.length === 0 || s.cells.some((re) => re.test(id))) cells.push({ id, profile, inputFormat, kind });
      }
    }
  }
  return cells;
}

async function main(): Promise<number> {
  const s = parseArgs(process.argv.slice(2));
  const sparsify = sparsifyCommand();
  const peers = s.peers.filter((p) => sparsify.argv.length > 0 || !p.name.startsWith('sparsify'));
  requireTools(peers);
  const say = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };
  const started = new Date();

  const planned = planCells(s);
  if (planned.length === 0) throw new Error('no cell matches --images, --inputs, --outputs and --cells');
  // Only the images some selected cell needs are built.
  const images = new Map<ProfileName, { image: BenchImage; floor: BenchImage }>();
  for (const profile of new Set(planned.map((c) => c.profile))) {
    const spec = specOf(profile, s.sizeArg, s.fs);
    const image = await ensureImage(REPO, s.benchDir, spec, say);
    const floor = peers.some((p) => p.name === 'floor') ? await ensureImage(REPO, s.benchDir, floorSpecOf(spec), say) : image;
    images.set(profile, { image, floor });
  }
  const cells: Cell[] = planned.map((c) => ({ ...c, ...images.get(c.profile)! }));

  const runDir = join(s.benchDir, `run-${started.toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${process.pid}`);
  mkdirSync(runDir, { recursive: true });
  const dropOutputs = (): void => {
    for (const name of readdirSync(runDir)) if (name.startsWith('out-') || name.startsWith('tmp-')) rmSync(join(runDir, name), { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      void stopCurrent().then(checksSettled).finally(() => {
        if (!s.keep) dropOutputs();
        process.exit(signal === 'SIGINT' ? 130 : 143);
      });
    });
  }

  const out: string[] = [];
  for (const [profile, { image, floor }] of images) {
    out.push(describeImage(profile, image, statSync(image.path('raw')).blocks * 512));
    if (floor !== image) out.push(`  floor: ${floor.base}.{raw,qcow2}: live ${(floor.liveBytes / 2 ** 20).toFixed(1)} MiB, allocated ${(statSync(floor.path('raw')).blocks * 512 / 2 ** 20).toFixed(1)} MiB`);
  }
  if (sparsify.note) out.push(`note: ${sparsify.note}; no ratios`);
  out.push(`runs: ${s.runs} per row, rotated order; page cache warm; ${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(1)} at the start`);
  process.stdout.write(`${out.join('\n')}\n\n`);

  const results: { cell: Cell; rows: RowResult[]; summary: RowSummary[] }[] = [];
  for (const cell of cells) {
    const cellPeers = peers.filter((p) => p.kinds.includes(cell.kind));
    const rows = await runCell(cell, cellPeers, { runDir, runs: s.runs, keep: s.keep, sparsify: sparsify.argv, say });
    const summary = summarize(rows);
    results.push({ cell, rows, summary });
    process.stdout.write(`${formatCell(cell, s.runs, summary)}\n\n`);
  }
  const elapsed = (Date.now() - started.getTime()) / 1000;
  process.stdout.write(`${TABLE_NOTES}\nlogs: ${runDir}; ${elapsed.toFixed(0)} s in all\n`);

  if (s.json) {
    const doc = {
      version: 1,
      command: ['scripts/bench', ...process.argv.slice(2)],
      startedAt: started.toISOString(),
      elapsedSeconds: elapsed,
      host: { cpus: cpus().length, loadAverageAtStart: loadavg()[0] },
      settings: { runs: s.runs, size: s.sizeArg, fs: s.fs, sparsify: sparsify.argv, ...(sparsify.note ? { note: sparsify.note } : {}) },
      images: Object.fromEntries([...images].map(([profile, { image, floor }]) => [profile, {
        base: image.base, spec: image.spec, virtualBytes: image.virtualBytes, liveBytes: image.liveBytes,
        allocatedBytes: { raw: statSync(image.path('raw')).blocks * 512, qcow2: statSync(image.path('qcow2')).blocks * 512 },
        floor: { base: floor.base, spec: floor.spec, liveBytes: floor.liveBytes },
      }])),
      cells: results.map(({ cell, rows, summary }) => ({
        id: cell.id, profile: cell.profile, input: cell.inputFormat, output: cell.kind,
        rows: rows.map((row, i) => ({ ...row, summary: summary[i] })),
      })),
    };
    writeFileSync(s.json, `${JSON.stringify(doc, null, 2)}\n`);
  }
  if (!s.keep) dropOutputs();
  return results.some((r) => r.rows.some((row) => row.status !== 'ok')) ? 1 : 0;
}

main().then((code) => process.exit(code), (error: unknown) => {
  process.stderr.write(`bench: error: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(2);
});
