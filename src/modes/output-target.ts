/**
 * What copy mode writes to. A new or replaced regular file is written under a temporary name
 * beside it and renamed into place on success; an existing block device (an LV, a LUN, a loop
 * device) is written into as a raw target, as qemu-img does, and never renamed over. Anything
 * else (a directory, a character device, a FIFO, a socket) is refused before any work.
 */
import { constants, type Stats } from 'node:fs';
import { access, lstat, open, readFile, realpath, rename, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { CopyOptions, OutputFormat } from '../options.js';
import { errnoOf, pathError } from '../util/errno.js';
import { fsyncDir } from '../util/fsync.js';

/** Where the output goes. */
export type OutputTarget =
  | {
      readonly kind: 'file';
      /** The file renamed over: the output path with symbolic links resolved. */
      readonly path: string;
      /** The temporary name written first, in the same directory. */
      readonly partialPath: string;
    }
  | { readonly kind: 'block-device'; readonly path: string; readonly sizeBytes: number };

/** The longest file name (bytes) Linux filesystems take (NAME_MAX). */
const NAME_MAX_BYTES = 255;

/**
 * `.NAME.sparsify-PID.partial`, with NAME cut (at a character boundary) so that the whole name
 * fits NAME_MAX whatever the output's name. The `.sparsify-PID.partial` ending is what a later
 * run looks for to remove the partials of dead runs.
 */
export function partialPathFor(outputPath: string, pid: number): string {
  const suffix = `.sparsify-${pid}.partial`;
  const room = NAME_MAX_BYTES - 1 - Buffer.byteLength(suffix);
  let name = basename(outputPath);
  while (Buffer.byteLength(name) > room) name = [...name].slice(0, -1).join('');
  return join(dirname(outputPath), `.${name}${suffix}`);
}

/**
 * Decides, before any work, what the output is and refuses what cannot be written: an existing
 * output without --overwrite, the input itself, a directory, a special file, a directory that
 * does not exist or cannot be written.
 */
export async function resolveOutputTarget(options: CopyOptions): Promise<OutputTarget> {
  const given = options.output;
  const link = await lstat(given).catch((err: unknown) => missingOk(err, given));
  if (!link) return newFileTarget(given);
  const real = await realpath(given).catch(() => {
    throw new SparsifyError('BAD_PATH', `output ${given} is a symbolic link to a file that does not exist`, {
      hint: 'remove the link, or give the path it should point to',
    });
  });
  const st = await stat(real);
  refuseSpecial(given, st);
  if (!options.overwrite) {
    throw new SparsifyError('OUTPUT_EXISTS', `output ${given} already exists${st.isBlockDevice() ? ' (a block device)' : ''}`, {
      hint: st.isBlockDevice()
        ? 'add --overwrite to write the image onto the device (everything on it is lost)'
        : 'choose another name, or add --overwrite to replace it',
    });
  }
  await refuseInput(options.input, given, st);
  if (st.isBlockDevice()) return { kind: 'block-device', path: given, sizeBytes: await blockDeviceSize(given, st) };
  return newFileTarget(real);
}

/** A file is renamed into place and its directory fsynced; a block device was written in place. */
export async function commitOutput(target: OutputTarget): Promise<void> {
  if (target.kind !== 'file') return;
  await rename(target.partialPath, target.path).catch((err: unknown) => {
    throw pathError(err, 'output', target.path);
  });
  await fsyncDir(dirname(target.path));
}

/** The checks that need the output format and the input's virtual size (after the input is examined). */
export function checkOutputFits(target: OutputTarget, format: OutputFormat, virtualSizeBytes: number): void {
  if (target.kind !== 'block-device') return;
  if (format !== 'raw') {
    throw new SparsifyError('USAGE', `cannot write a ${format} image onto the block device ${target.path}`, {
      hint: 'add --convert raw: sparsify writes only raw images onto block devices',
    });
  }
  if (target.sizeBytes < virtualSizeBytes) {
    throw new SparsifyError(
      'USAGE',
      `block device ${target.path} (${target.sizeBytes} bytes) is smaller than the input's virtual size (${virtualSizeBytes} bytes)`,
      { hint: `use a device of at least ${virtualSizeBytes} bytes, or write to a file` },
    );
  }
}

async function newFileTarget(path: string): Promise<OutputTarget> {
  if (Buffer.byteLength(basename(path)) > NAME_MAX_BYTES) throw pathError({ code: 'ENAMETOOLONG' }, 'output', path);
  const dir = dirname(path);
  const dirStat = await stat(dir).catch((err: unknown) => {
    throw pathError(err, 'output', path);
  });
  if (!dirStat.isDirectory()) throw pathError({ code: 'ENOTDIR' }, 'output', path);
  // W_OK answers EROFS on a read-only filesystem even for root.
  await access(dir, constants.W_OK).catch((err: unknown) => {
    throw pathError(err, 'output', path);
  });
  return { kind: 'file', path, partialPath: partialPathFor(path, process.pid) };
}

function refuseSpecial(given: string, st: Stats): void {
  const what = st.isDirectory()
    ? 'a directory'
    : st.isCharacterDevice()
      ? 'a character device'
      : st.isFIFO()
        ? 'a FIFO'
        : st.isSocket()
          ? 'a socket'
          : undefined;
  if (!what) return;
  throw new SparsifyError('USAGE', `output ${given} is ${what}; sparsify writes a regular file or a block device`, {
    hint: 'give the name of the output image file',
  });
}

async function refuseInput(input: string, output: string, out: Stats): Promise<void> {
  const inp = await stat(input).catch(() => undefined);
  if (!inp) return;
  const same = out.isBlockDevice() && inp.isBlockDevice() ? out.rdev === inp.rdev : out.dev === inp.dev && out.ino === inp.ino;
  if (same) throw new SparsifyError('USAGE', `you cannot use the same disk image for input and output (${output})`);
}

/** Opens the device exclusively (EBUSY when mounted or held) and reads its size from sysfs. */
async function blockDeviceSize(path: string, st: Stats): Promise<number> {
  const fh = await open(path, constants.O_WRONLY | constants.O_EXCL).catch((err: unknown) => {
    throw pathError(err, 'output', path);
  });
  await fh.close();
  const { major, minor } = deviceNumbers(st.rdev);
  const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
  if (!Number.isSafeInteger(sectors)) throw new SparsifyError('INTERNAL', `cannot read the size of block device ${path}`);
  return sectors * 512;
}

/** Linux's dev_t encoding (glibc gnu_dev_major/minor); BigInt because dev_t is 64 bits. */
function deviceNumbers(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n)),
  };
}

function missingOk(err: unknown, path: string): undefined {
  if (errnoOf(err) === 'ENOENT') return undefined;
  throw pathError(err, 'output', path);
}
