/**
 * What the bench times: the output kinds (the columns of the matrix) and the peers (the rows),
 * each peer at its strongest settings, and how each one's output is judged.
 */

/** raw, qcow2, compressed qcow2 (zlib, zstd), or the input rewritten in place (--in-place). */
export type OutputKind = 'raw' | 'qcow2' | 'zlib' | 'zstd' | 'in-place';
export const OUTPUT_KINDS: readonly OutputKind[] = ['raw', 'qcow2', 'zlib', 'zstd', 'in-place'];
export const COPY_KINDS: readonly OutputKind[] = ['raw', 'qcow2', 'zlib', 'zstd'];

export type PeerName = 'sparsify' | 'sparsify-mount' | 'sparsify-nozero' | 'virt-sparsify' | 'qemu-img' | 'qemu-img-m16' | 'nbdcopy' | 'floor';
export const PEER_NAMES: readonly PeerName[] = ['sparsify', 'sparsify-mount', 'sparsify-nozero', 'virt-sparsify', 'qemu-img', 'qemu-img-m16', 'nbdcopy', 'floor'];

/**
 * How an output is judged before its times count: `input` — qemu-img compare against the input
 * (an exact copy); `floor` — against the floor image it was copied from; `manifest` — every kept
 * file, the partition table and the swap header as make-image recorded them (a sparsifier
 * legitimately changes the deleted data, so it cannot equal the input).
 */
export type CheckKind = 'input' | 'floor' | 'manifest';

/** Everything a peer needs to build its command line for one cell. */
export interface RunContext {
  readonly kind: OutputKind;
  readonly input: string;
  readonly inputFormat: 'raw' | 'qcow2';
  /** The floor image in the input's format (the floor peer reads it instead of the input). */
  readonly floorInput: string;
  /** Where the output goes; for in-place, the copy of the input that is rewritten. */
  readonly output: string;
  readonly virtualBytes: number;
  /** argv prefix that runs sparsify. */
  readonly sparsify: readonly string[];
  /** Where a peer that writes sparsify's --json report puts it. */
  readonly report: string;
}

export interface Peer {
  readonly name: PeerName;
  readonly kinds: readonly OutputKind[];
  readonly check: CheckKind;
  /** Extra environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** The run writes sparsify's --json report at ctx.report (its phase times are kept). */
  readonly report?: boolean;
  /** Untimed set-up, e.g. an empty destination; argv lists run in order. */
  prepare?(ctx: RunContext): string[][];
  argv(ctx: RunContext): string[];
}

/** The output image's format. */
export function outputFormat(ctx: Pick<RunContext, 'kind' | 'inputFormat'>): 'raw' | 'qcow2' {
  if (ctx.kind === 'in-place') return ctx.inputFormat;
  return ctx.kind === 'raw' ? 'raw' : 'qcow2';
}

/** The options sparsify and virt-sparsify share for an output kind. */
function sparsifierArgs(ctx: RunContext): string[] {
  const common = ['--format', ctx.inputFormat];
  switch (ctx.kind) {
    case 'in-place': return [...common, '--in-place', ctx.output];
    case 'raw': return [...common, '--convert', 'raw', ctx.input, ctx.output];
    case 'qcow2': return [...common, '--convert', 'qcow2', ctx.input, ctx.output];
    case 'zlib': return [...common, '--convert', 'qcow2', '--compress', ctx.input, ctx.output];
    case 'zstd': return [...common, '--convert', 'qcow2', '--compress', '-o', 'compression_type=zstd', ctx.input, ctx.output];
  }
}

/** qemu-img convert at its strongest: -W (out-of-order writes), -c for compressed outputs. */
function qemuImgConvert(ctx: RunContext, input: string, extra: readonly string[]): string[] {
  const compress = ctx.kind === 'zlib' || ctx.kind === 'zstd' ? ['-c'] : [];
  const zstd = ctx.kind === 'zstd' ? ['-o', 'compression_type=zstd'] : [];
  return ['qemu-img', 'convert', '-W', ...extra, ...compress, '-f', ctx.inputFormat, '-O', outputFormat(ctx), ...zstd, input, ctx.output];
}

/**
 * libguestfs: KVM aborts on this machine, so TCG; its appliance cache stays outside the measured
 * TMPDIR so it is neither rebuilt each run nor counted as the run's temporary space.
 */
export const GUESTFS_ENV = { LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg', LIBGUESTFS_CACHEDIR: '/var/tmp' };

export const PEERS: readonly Peer[] = [
  // The default engine (--engine auto: map, then the appliance, then mount).
  { name: 'sparsify', kinds: OUTPUT_KINDS, check: 'manifest', report: true, argv: (ctx) => [...ctx.sparsify, '--json', ctx.report, ...sparsifierArgs(ctx)] },
  // virt-sparsify's way without a VM: every volume mounted in the host kernel (root).
  { name: 'sparsify-mount', kinds: OUTPUT_KINDS, check: 'manifest', report: true, argv: (ctx) => [...ctx.sparsify, '--engine', 'mount', '--json', ctx.report, ...sparsifierArgs(ctx)] },
  // The copier alone: no filesystem pass, so the output must equal the input.
  { name: 'sparsify-nozero', kinds: COPY_KINDS, check: 'input', argv: (ctx) => [...ctx.sparsify, '--no-zero', ...sparsifierArgs(ctx)] },
  { name: 'virt-sparsify', kinds: OUTPUT_KINDS, check: 'manifest', env: GUESTFS_ENV, argv: (ctx) => ['virt-sparsify', ...sparsifierArgs(ctx)] },
  { name: 'qemu-img', kinds: COPY_KINDS, check: 'input', argv: (ctx) => qemuImgConvert(ctx, ctx.input, []) },
  // Twice the default 8 coroutines in flight.
  { name: 'qemu-img-m16', kinds: COPY_KINDS, check: 'input', argv: (ctx) => qemuImgConvert(ctx, ctx.input, ['-m', '16']) },
  {
    // A raw side is the file itself (nbdcopy's own pread/pwrite, no NBD hop); a qcow2 side is
    // qemu-nbd, which nbdcopy starts. The output is new, so it reads as zero and
    // --destination-is-zero lets nbdcopy skip zero blocks; a qcow2 destination uses qemu-img
    // convert's default cache mode (unsafe: no flush at close; writeback took 9 s instead of 5 on
    // 1.5 GiB). nbdcopy's defaults otherwise: 1-2 MiB requests, multi-conn (qemu-nbd -r -e 4)
    // and aio=io_uring were no faster here. It cannot write compressed clusters.
    name: 'nbdcopy',
    kinds: ['raw', 'qcow2'],
    check: 'input',
    prepare: (ctx) => [['qemu-img', 'create', '-q', '-f', outputFormat(ctx), ctx.output, String(ctx.virtualBytes)]],
    argv: (ctx) => ['nbdcopy', '--destination-is-zero', '--',
      ...(ctx.inputFormat === 'raw' ? [ctx.input] : ['[', 'qemu-nbd', '-r', '-f', ctx.inputFormat, ctx.input, ']']),
      ...(outputFormat(ctx) === 'raw' ? [ctx.output] : ['[', 'qemu-nbd', '-f', outputFormat(ctx), '--cache=unsafe', ctx.output, ']'])],
  },
  // Writing the live data once: qemu-img convert -W (as the qemu-img row) of the floor image.
  { name: 'floor', kinds: COPY_KINDS, check: 'floor', argv: (ctx) => qemuImgConvert(ctx, ctx.floorInput, []) },
];
