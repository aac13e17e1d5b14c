import { statSync, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { SparsifyError } from '../errors.js';
import { isBatch, validateBatch, type BatchCommand } from './batch-options.js';
import { ENGINE_CHOICES } from '../engines/ids.js';
import { EXPORT_PRESET_NAMES, exportPreset, mergeExportPreset } from '../export/presets.js';
import { selectOperations } from '../template/operations/select.js';
import {
  OUTPUT_FORMATS,
  type CheckTmpdir,
  type CopyOptions,
  type EngineChoice,
  type MachineReadableTarget,
  type Options,
  type OutputFormat,
  type ShrinkRequest,
  type TemplateRequest,
  type TmpPlace,
} from '../options.js';
import { parseKeySelector, type KeyRequest } from '../keys/selector.js';
import { VERSION } from '../version.js';
import { DEFAULT_SHRINK_MARGIN, parseShrinkMargin } from '../shrink/margin.js';

/** How the CLI talks to the user; not part of the run's Options. */
export interface Presentation {
  readonly verbose: boolean;
  readonly trace: boolean;
  readonly quiet: boolean;
  readonly machineReadable?: MachineReadableTarget;
}

/** `--inspect DISK`: what to inspect and how to show it. */
export interface InspectCommand {
  readonly disk: string;
  readonly format?: string;
  /** table (default), virt-inspector's XML on stdout (--xml), or JSON to a file beside the table ('-': stdout, instead of it). */
  readonly show: { kind: 'table' } | { kind: 'xml' } | { kind: 'json'; file: string };
}

/** What the command line asks for. */
export type Command_ =
  | { kind: 'run'; options: Options; presentation: Presentation }
  | { kind: 'capabilities'; presentation: Presentation }
  | { kind: 'inspect'; request: InspectCommand; presentation: Presentation }
  | { kind: 'batch'; command: BatchCommand; presentation: Presentation }
  | { kind: 'list-operations' }
  | { kind: 'exit'; code: number };

const EXIT_CODES_HELP = `
Exit codes:
  0  success (free space may or may not have been found)
  1  error: the message says what to do; no output file is left
     (a block device given as output may have been partly written)
  2  --check-tmpdir=fail: not enough temporary space
  3  --in-place: the image cannot discard; use copy mode
  4  -d: the domain is not shut off (running, paused, saved); nothing was touched
  5  a batch (-d, --output-dir, several disks): some disks failed, the others are done

Examples:
  sparsify disk.qcow2 small.qcow2
  sparsify disk.raw --convert qcow2 --compress disk.qcow2
  sparsify --in-place disk.qcow2
  sparsify --inspect disk.qcow2 --xml
  sparsify --in-place -d guest
  sparsify -d guest --output-dir /var/lib/libvirt/images/small --update-domain
  sparsify --in-place --jobs 2 -d web -d db /srv/images/*.qcow2
  sparsify --resume --in-place --jobs 2 -d web -d db /srv/images/*.qcow2
  sparsify --in-place --all-domains --filter 'web-*'
  sparsify --template --operations defaults,-logfiles guest.qcow2 template.qcow2`;

function buildProgram(): Command {
  const collect = (value: string, previous: string[]) => [...previous, value];
  return new Command('sparsify')
    .usage(
      '[--options] indisk outdisk\n       sparsify [--options] --in-place disk\n       sparsify --inspect [--xml|--json FILE] disk\n' +
        '       sparsify --template [--operations LIST] [--dry-run] [--options] indisk outdisk',
    )
    .description('Make a virtual machine disk image sparse (a virt-sparsify successor)')
    .argument('[disks...]')
    .option('--check-tmpdir <ignore|continue|warn|fail>', 'check there is enough temporary space', 'warn')
    .option('--compress', 'compressed output (qcow2)')
    .option('--convert <format>', `output format: ${OUTPUT_FORMATS.join(', ')} (default: the input's)`)
    .option('-f, --format <format>', 'input format (default: probe; raw is probed with a warning)')
    .option('--ignore <fs>', 'leave this filesystem or volume group alone (repeatable)', collect, [])
    .option('--in-place, --inplace', 'give free space back to the host in the image itself')
    // libvirt domains (issue 13): one block, so that other options merge beside it.
    .option('-d, --domain <name|uuid>', "a libvirt domain's disks (it must be shut off): in place, or copies into --output-dir (repeatable)", collect, [])
    .option('--all-domains', 'every domain of the connection (-c); one not shut off is skipped with the reason')
    .option('--filter <glob>', "with --all-domains: only domains whose name matches this shell glob ('web-*'; repeatable)", collect, [])
    .option('-c, --connect <uri>', "libvirt connection URI for -d (default: virsh's)")
    .option('--output-dir <dir>', 'copy mode with -d or several disks: one output per disk, named after the disk')
    .option('--keep-backing', 'copy mode, a qcow2 over a backing file: OUT is a qcow2 over the same backing file, holding only the top layer (default: flattened)')
    .option('--update-domain', 'with -d --output-dir: point the domain at the new disks (the old definition is kept beside them)')
    .option('--jobs <n>', 'with -d or several disks: how many disks at once (default: one per core, a GiB of memory each)')
    .option('--resume', 'a batch cut short (Ctrl-C, a crash, a reboot): the same command with --resume skips the disks it finished')
    .option('--inspect', "show the guest's operating systems and filesystems (read-only, inside the libguestfs appliance)")
    .option('--xml', "with --inspect: virt-inspector's XML on stdout")
    // Templating (issue 11): one block, so that other options merge beside it.
    .option('--template', "seal the guest for export first (virt-sysprep's operations, on the overlay: the input is never written)")
    .option('--operations <list>', "with --template: virt-sysprep's syntax (name, -name, defaults, all; comma lists; repeatable)", collect, [])
    .option('--list-operations', 'list the --template operations (* = default) and exit')
    .option('--dry-run', 'with --template: report what the operations would remove or change; write nothing')
    // Shrinking (issue 12).
    .option('--shrink', 'shrink the filesystems, move the partitions down and make the virtual disk end after the last one (copy mode)')
    .option('--shrink-margin <size>', 'with --shrink: room kept above each filesystem\'s minimum, bytes (64M) or a share (5%, the default)')
    .option('-o <options>', 'creation options for the output image (qemu-img create -o)')
    .option('--tmp <dir|block-device|prebuilt:file>', 'where the copy-mode overlay lives (default $TMPDIR)')
    .option('--zero <fs>', 'make this filesystem wholly zero (repeatable)', collect, [])
    .addOption(new Option('--no-zero', 'no filesystem pass: only blocks that already read as zero become holes'))
    .addOption(new Option('--skip-zero-pass').hideHelp())
    .option('--overwrite', 'replace an existing output disk')
    .option('--export <preset>', `output for a platform: ${EXPORT_PRESET_NAMES.join(', ')} (--convert, -o, --compress override it)`)
    .option('--ova', 'with --export vmware: OUT is an OVA (OVF descriptor + streamOptimized vmdk)')
    .addOption(new Option('--engine <engine>', 'how free space is found').choices([...ENGINE_CHOICES]).default('auto'))
    .option('--json <file>', 'write a JSON report (per volume, sizes, timings)')
    .option(
      '--verify',
      'check the result: copy mode re-reads the output against what was copied (the input, or the overlay holding ' +
        "the mount engine's writes); in place, what the pass must not change against a checksum taken before it",
    )
    .option('--machine-readable', 'machine-friendly output; --machine-readable=file:F|stream:stdout|stream:stderr|fd:N sends it there')
    .addOption(new Option('--machine-readable-to <target>').hideHelp())
    .option('-q, --quiet', 'no progress output')
    .option('-v, --verbose', 'verbose messages and stack traces')
    .option('-x', 'print each external command')
    .addOption(new Option('--wrap').hideHelp())
    .addOption(new Option('--colors').hideHelp())
    .addOption(new Option('--colours').hideHelp())
    .addOption(new Option('--color').hideHelp())
    .addOption(new Option('--colour').hideHelp())
    // virt-sparsify's OCaml GC check at exit; accepted with no effect, as its test scripts pass it.
    .addOption(new Option('--debug-gc').hideHelp())
    // LUKS keys (src/keys/), as virt-sparsify takes them.
    .addOption(new Option('--key <selector>', 'open a LUKS volume: ID:key:STRING or ID:file:FILE, ID a device, a LUKS UUID or all (repeatable)').argParser(collect).default([]))
    .option('--keys-from-stdin', 'read one key per line from stdin for each LUKS volume no --key names, in disk order')
    .option('--echo-keys', 'show the keys typed at the terminal for --keys-from-stdin (not shown by default)')
    .version(`sparsify ${VERSION}`, '-V, --version')
    .helpOption('--help', 'display help')
    .addHelpText('after', EXIT_CODES_HELP)
    .exitOverride()
    .configureOutput({ outputError: () => {} });
}

/**
 * Rewrites `--machine-readable=TARGET` into two tokens commander understands, and `--no-zero`
 * into a flag of its own (commander would read it as the negation of `--zero FS`).
 */
function preprocess(argv: readonly string[]): string[] {
  return argv.flatMap((arg) => {
    if (arg.startsWith('--machine-readable=')) {
      return ['--machine-readable', '--machine-readable-to', arg.slice('--machine-readable='.length)];
    }
    return arg === '--no-zero' ? ['--skip-zero-pass'] : [arg];
  });
}

/** Parses argv (without node and script) into a Command_; throws USAGE on bad input. */
export function parseCommandLine(argv: readonly string[]): Command_ {
  const program = buildProgram();
  try {
    program.parse(preprocess(argv), { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return { kind: 'exit', code: 0 };
      throw usage(err.message.replace(/^error: /, ''));
    }
    throw err;
  }
  const o = program.opts();
  const disks = program.args;
  const presentation: Presentation = {
    verbose: Boolean(o.verbose),
    trace: Boolean(o.x),
    quiet: Boolean(o.quiet),
    ...(o.machineReadable ? { machineReadable: parseMachineReadable(o.machineReadableTo) } : {}),
  };
  if (o.listOperations) return { kind: 'list-operations' };
  // virt-sparsify's capability query: --machine-readable and nothing to work on (no disk, no domain).
  const noInput = disks.length === 0 && (o.domain as string[]).length === 0 && !o.allDomains;
  if (noInput && presentation.machineReadable) return { kind: 'capabilities', presentation };
  if (o.inspect) return { kind: 'inspect', request: validateInspect(o, disks), presentation };
  if (o.xml) throw usage('--xml goes with --inspect');
  if (isBatch(o, disks)) return { kind: 'batch', command: validateBatch(o, disks, validate), presentation };
  if (o.connect !== undefined || o.updateDomain) throw usage('-c and --update-domain go with -d DOMAIN');
  if ((o.filter as string[]).length > 0) throw usage('--filter goes with --all-domains');
  return { kind: 'run', options: validate(o, disks), presentation };
}

function usage(message: string): SparsifyError {
  return new SparsifyError('USAGE', message, { hint: "see 'sparsify --help'" });
}

function parseMachineReadable(target: string | undefined): MachineReadableTarget {
  if (target === undefined || target === 'stream:stdout') return { kind: 'stream', stream: 'stdout' };
  if (target === 'stream:stderr') return { kind: 'stream', stream: 'stderr' };
  if (target.startsWith('file:') && target.length > 5) return { kind: 'file', path: target.slice(5) };
  const fd = /^fd:(\d+)$/.exec(target);
  if (fd) return { kind: 'fd', fd: Number(fd[1]) };
  throw usage(`invalid output for --machine-readable: ${target} (use file:F, stream:stdout, stream:stderr or fd:N)`);
}

function parseCheckTmpdir(value: string): CheckTmpdir {
  const table: Record<string, CheckTmpdir> = {
    ignore: 'ignore', i: 'ignore',
    continue: 'continue', cont: 'continue', c: 'continue',
    warn: 'warn', warning: 'warn', w: 'warn',
    fail: 'fail', f: 'fail', error: 'fail',
  };
  const v = table[value];
  if (!v) throw usage(`--check-tmpdir: unknown argument ‘${value}’`);
  return v;
}

function parseOutputFormat(value: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw usage(`--convert: unsupported output format ‘${value}’ (use one of ${OUTPUT_FORMATS.join(', ')})`);
}

function parseTmp(value: string | undefined): TmpPlace {
  const dir = value ?? process.env.TMPDIR ?? '/tmp';
  if (dir.startsWith('prebuilt:')) {
    const path = resolve(dir.slice('prebuilt:'.length));
    if (!statSync(path, { throwIfNoEntry: false })) {
      throw usage(`--tmp prebuilt:file: ${path}: file does not exist`);
    }
    return { kind: 'prebuilt', path };
  }
  const st = statSync(dir, { throwIfNoEntry: false });
  if (st?.isDirectory()) return { kind: 'dir', path: resolve(dir) };
  if (st?.isBlockDevice()) return { kind: 'block-device', path: resolve(dir) };
  throw usage('--tmp parameter must point to a directory, block device or prebuilt file');
}

type Raw = Record<string, unknown>;

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

function validate(o: Raw, disks: string[]): Options {
  const common = {
    format: o.format as string | undefined,
    ignore: o.ignore as string[],
    zero: o.zero as string[],
    engine: o.engine as EngineChoice,
    ...(o.json ? { jsonFile: resolve(o.json as string) } : {}),
    verify: Boolean(o.verify),
    ...keysOf(o),
  };
  const template = validateTemplate(o);
  const shrink = validateShrink(o);
  if (o.inPlace || o.inplace) return validateInPlace(o, disks, common);
  if (disks.length !== 2) throw usage('usage: sparsify [--options] indisk outdisk');
  const [input, output] = disks.map((d) => resolve(d)) as [string, string];
  if (input === output) throw usage('you cannot use the same disk image for input and output');
  // Any other problem with the output path (ENAMETOOLONG, EACCES…) is the copy mode's to explain.
  if (statOrUndefined(output)?.isCharacterDevice()) {
    throw usage(`output ‘${output}’ cannot be a character device, it must be a regular file`);
  }
  const convert = o.convert === undefined ? undefined : parseOutputFormat(o.convert as string);
  // Whether --compress and -o suit the output format is the copy job's decision (modes/output-format.ts).
  const exported = validateExport(o, convert);
  return {
    mode: 'copy',
    input,
    output,
    ...common,
    ...(convert ? { convert } : {}),
    compress: Boolean(o.compress),
    ...(o.o !== undefined ? { outputOptions: o.o as string } : {}),
    tmp: parseTmp(o.tmp as string | undefined),
    checkTmpdir: parseCheckTmpdir(o.checkTmpdir as string),
    overwrite: Boolean(o.overwrite),
    noZero: Boolean(o.skipZeroPass),
    ...exported,
    ...(template ? { template } : {}),
    ...(shrink ? { shrink } : {}),
    ...(o.keepBacking ? { keepBacking: 'always' as const } : {}),
  };
}

/** --shrink and --shrink-margin: copy mode only (IN is never written). */
function validateShrink(o: Raw): ShrinkRequest | undefined {
  if (!o.shrink) {
    if (o.shrinkMargin !== undefined) throw usage('--shrink-margin goes with --shrink: add --shrink to shrink the disk');
    return undefined;
  }
  if (o.inPlace || o.inplace) throw usage('you cannot use --in-place and --shrink options together: --shrink writes a new image');
  if ((o.template as boolean) && o.dryRun) throw usage('you cannot use --dry-run and --shrink options together');
  return { margin: o.shrinkMargin === undefined ? DEFAULT_SHRINK_MARGIN : parseShrinkMargin(o.shrinkMargin as string) };
}

/** --key (each checked now, read only when a volume needs it) and --keys-from-stdin. */
function keysOf(o: Raw): { keys?: KeyRequest } {
  const selectors = (o.key as string[]).map(parseKeySelector);
  const fromStdin = Boolean(o.keysFromStdin);
  const echo = o.echoKeys ? { echoKeys: true } : {};
  return selectors.length > 0 || fromStdin ? { keys: { selectors, fromStdin, ...echo } } : {};
}

/** --export NAME and --ova: a known preset, and --ova only where the preset allows it. */
function validateExport(o: Raw, convert: OutputFormat | undefined): Pick<CopyOptions, 'exportPreset' | 'ova'> {
  if (o.export === undefined && !o.ova) return {};
  const preset = o.export === undefined ? undefined : exportPreset(o.export as string).name;
  const given = { ...(preset ? { exportPreset: preset } : {}), ...(convert ? { convert } : {}), compress: Boolean(o.compress), ova: Boolean(o.ova) };
  mergeExportPreset(given);
  return { ...(preset ? { exportPreset: preset } : {}), ...(o.ova ? { ova: true } : {}) };
}

/**
 * --template and what goes with it. The operation names are checked here (select.ts), so a
 * mistyped one is a usage error before any disk is opened.
 */
function validateTemplate(o: Raw): TemplateRequest | undefined {
  const operations = o.operations as string[];
  if (!o.template) {
    if (operations.length > 0) throw usage('--operations goes with --template: add --template to seal the guest');
    if (o.dryRun) throw usage('--dry-run goes with --template: add --template to see what sealing the guest would do');
    return undefined;
  }
  if (o.inPlace || o.inplace) throw usage('you cannot use --in-place and --template options together: --template writes a new image');
  const selected = selectOperations(operations).map((op) => op.name);
  return { operations: selected, dryRun: Boolean(o.dryRun) };
}

/** The options that make no sense with --inspect (it reads, and writes nothing but its answer). */
const NOT_WITH_INSPECT: Record<string, string> = {
  inPlace: '--in-place', inplace: '--in-place', compress: '--compress', convert: '--convert', o: '-o',
  tmp: '--tmp', overwrite: '--overwrite', verify: '--verify', skipZeroPass: '--no-zero',
  connect: '-c', outputDir: '--output-dir', updateDomain: '--update-domain', jobs: '--jobs', resume: '--resume', allDomains: '--all-domains',
  export: '--export', ova: '--ova',
  template: '--template', dryRun: '--dry-run',
  shrink: '--shrink', shrinkMargin: '--shrink-margin', keepBacking: '--keep-backing',
};

function validateInspect(o: Raw, disks: string[]): InspectCommand {
  if (disks.length !== 1) throw usage('usage: sparsify --inspect [--xml|--json FILE] disk');
  const other = Object.keys(NOT_WITH_INSPECT).find((k) => o[k] !== undefined && o[k] !== false);
  if (other) throw usage(`you cannot use --inspect and ${NOT_WITH_INSPECT[other]} options together`);
  if ((o.ignore as string[]).length > 0 || (o.zero as string[]).length > 0) throw usage('you cannot use --inspect with --ignore or --zero');
  if ((o.operations as string[]).length > 0) throw usage('you cannot use --inspect and --operations options together');
  if ((o.domain as string[]).length > 0) throw usage('you cannot use --inspect and -d options together');
  if (o.xml && o.json) throw usage('--inspect shows either --xml or --json, not both');
  const json = o.json as string | undefined;
  const show: InspectCommand['show'] = o.xml ? { kind: 'xml' } : json !== undefined ? { kind: 'json', file: json === '-' ? '-' : resolve(json) } : { kind: 'table' };
  return { disk: resolve(disks[0]!), ...(o.format ? { format: o.format as string } : {}), show };
}

function validateInPlace(o: Raw, disks: string[], common: Omit<Options, 'mode' | 'input'>): Options {
  if (disks.length !== 1) throw usage('usage: sparsify --in-place [--options] indisk');
  if (o.checkTmpdir !== 'warn') throw usage('you cannot use --in-place and --check-tmpdir options together');
  if (o.compress) throw usage('you cannot use --in-place and --compress options together');
  if (o.convert !== undefined) throw usage('you cannot use --in-place and --convert options together');
  if (o.o !== undefined) throw usage('you cannot use --in-place and -o options together');
  if (o.tmp !== undefined) throw usage('you cannot use --in-place and --tmp options together');
  if (o.overwrite) throw usage('you cannot use --in-place and --overwrite options together');
  if (o.keepBacking) throw usage('you cannot use --in-place and --keep-backing options together: in place an image over a backing file is refused');
  if (o.export !== undefined || o.ova) throw usage(`you cannot use --in-place and ${o.ova ? '--ova' : '--export'} options together`);
  return { mode: 'in-place', input: resolve(disks[0]!), ...common };
}
