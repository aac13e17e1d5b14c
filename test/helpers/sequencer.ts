/**
 * The order in which vitest hands test files to its two workers, and the shared Debian guest
 * built beside them.
 *
 * With no timing cache (a clean clone, as in CI) vitest runs larger files first, so the longest
 * files could start last and leave one worker alone at the end, and the guest's files (which
 * wait for scripts/make-guest) started among the first and held a worker idle. Here
 * (orderFiles):
 * 1. files known to be slow that need no guest, longest first, until each worker is held for the
 *    guest's build (GUEST_BUILD_S), each file counted on the worker that is free first;
 * 2. every other file known to be slow, longest first, whether it needs the guest or not;
 * 3. the files that need the guest with no known time;
 * 4. the rest as vitest orders them.
 * When any file that needs the guest is in the run, the guest's build starts at once in the
 * main process, beside the tests (buildGuest's lock makes the files wait for it, not build it
 * again); a file needs the guest when it imports test/helpers/guest.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { buildGuest } from './guest.js';

/**
 * Seconds per file, used when vitest's own cache has no duration for a file (a clean clone, as in
 * CI); only their order matters. From the clean-clone CI run of 4 December 2026 (`.ci/run`, 2
 * workers, 36.6 min, the 4 GiB guest built from nothing beside the first files): every file of
 * 60 s or more.
 */
const MEASURED_S: Record<string, number> = {
  'test/integration/template.test.ts': 365,
  'test/integration/copy-mode.test.ts': 333,
  'test/integration/shrink-layouts.test.ts': 295,
  'test/integration/template-boot.test.ts': 238,
  'test/integration/shrink-lvm.test.ts': 212,
  'test/integration/appliance.test.ts': 147,
  'test/integration/inspect.test.ts': 138,
  'test/integration/luks-installer.test.ts': 127,
  'test/integration/in-place.test.ts': 124,
  'test/integration/appliance-cancel.test.ts': 124,
  'test/integration/faults.test.ts': 102,
  'test/integration/template-operations.test.ts': 101,
  'test/integration/appliance-rootless.test.ts': 99,
  'test/integration/formats.test.ts': 98,
  'test/integration/memory.test.ts': 96,
  'test/integration/libvirt-batch.test.ts': 92,
  'test/integration/luks-header.test.ts': 90,
  'test/integration/verify.test.ts': 88,
  'test/integration/libvirt.test.ts': 83,
  'test/integration/shrink-btrfs.test.ts': 80,
  'test/integration/shrink-faults.test.ts': 73,
  'test/integration/libguestfs-scripts.test.ts': 63,
  'test/integration/mount-engine.test.ts': 60,
};

/** A file that takes at least this long is ordered by its time; the others keep vitest's order. */
const SLOW_S = 60;
/**
 * scripts/make-guest from nothing beside the first files in CI (packages downloaded, 2 cores
 * shared with two test files; 309 s in the 33.6-min run): the files that start first should hold
 * each worker this long.
 */
const GUEST_BUILD_S = 310;
/** vitest.config.ts' maxForks. */
const WORKERS = 2;

const GUEST_IMPORT = /from '\.\.\/helpers\/guest\.js'/;

export function needsGuest(path: string): boolean {
  return GUEST_IMPORT.test(readFileSync(path, 'utf8'));
}

/** One test file as the order sees it. */
export interface FileToOrder<T> {
  readonly file: T;
  /** Its expected duration, when known (vitest's cache, or MEASURED_S). */
  readonly seconds: number | undefined;
  readonly needsGuest: boolean;
}

/**
 * The order (see the module comment): the slow files that need no guest, longest first, until
 * each worker is held for the guest's build; then every other file known to be slow, longest
 * first, guest or not (the longest start early, so no worker is left alone with one at the end);
 * then the files that need the guest with no known time; then the rest in the order given.
 */
export function orderFiles<T>(files: readonly FileToOrder<T>[], guestBuildS: number, workers: number): T[] {
  const slow = files.filter((f) => f.seconds !== undefined && f.seconds >= SLOW_S).sort((a, b) => b.seconds! - a.seconds!);
  const cover: FileToOrder<T>[] = [];
  if (files.some((f) => f.needsGuest)) {
    // Each file goes to the worker that is free first: cover until none is free before the build ends.
    const busyUntilS = new Array<number>(workers).fill(0);
    for (const f of slow.filter((x) => !x.needsGuest)) {
      const first = Math.min(...busyUntilS);
      if (first >= guestBuildS) break;
      busyUntilS[busyUntilS.indexOf(first)] = first + f.seconds!;
      cover.push(f);
    }
  }
  const first = [...cover, ...slow.filter((f) => !cover.includes(f)), ...files.filter((f) => f.needsGuest && !slow.includes(f))];
  return [...first, ...files.filter((f) => !first.includes(f))].map((f) => f.file);
}

export default class SuiteSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const root = this.ctx.config.root;
    const seconds = (spec: TestSpecification): number | undefined => {
      const rel = relative(root, spec.moduleId);
      const cached = this.ctx.cache.getFileTestResults(`${spec.project.name}:${rel}`)?.duration;
      return cached !== undefined ? cached / 1000 : MEASURED_S[rel];
    };
    const items = base.map((file) => ({ file, seconds: seconds(file), needsGuest: needsGuest(file.moduleId) }));
    if (items.some((f) => f.needsGuest)) startGuestBuild();
    return orderFiles(items, GUEST_BUILD_S, WORKERS);
  }
}

/** Builds the guest (or finds it cached) while the first files run; a failure is the files' to report. */
function startGuestBuild(): void {
  const t0 = Date.now();
  buildGuest().then(
    () => console.log(`the test guest is ready (${((Date.now() - t0) / 1000).toFixed(0)} s)`),
    (error: Error) => console.warn(`building the test guest failed; the files that need it will try again: ${error.message}`),
  );
}
