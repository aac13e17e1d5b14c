/**
 * The order in which vitest hands test files to its two workers, and the shared Debian guest
 * built beside them.
 *
 * With no timing cache (a clean clone, as in CI) vitest runs larger files first, so the longest
 * files could start last and leave one worker alone at the end, and the guest's files (which
 * wait ~7 minutes for scripts/make-guest) started among the first and held a worker idle. Here:
 * 1. files known to be slow that need no guest, longest first (they cover the guest's build);
 * 2. the files that need the guest, longest first;
 * 3. the rest as vitest orders them.
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
 * CI); only their order matters. From a CI run on 2 cores (3 December 2026; the guest's build left
 * out of template.test.ts) where one was made; the others (*) from a full run on 4 December 2026
 * beside four other heavy jobs (load about 13, times about 1.5–4× CI's) scaled down by 2, and the
 * suites added that day (shrink, libvirt, LUKS; †) from their authors' runs, scaled the same.
 */
const MEASURED_S: Record<string, number> = {
  'test/integration/copy-mode.test.ts': 450,
  'test/integration/in-place.test.ts': 380, // *
  'test/integration/template.test.ts': 290,
  'test/integration/appliance-cancel.test.ts': 250, // *
  'test/integration/template-boot.test.ts': 249,
  'test/integration/shrink-layouts.test.ts': 230, // †
  'test/integration/appliance.test.ts': 177,
  'test/integration/inspect.test.ts': 149,
  'test/integration/luks-installer.test.ts': 100, // †
  'test/integration/luks-bad-input.test.ts': 70, // †
};

const GUEST_IMPORT = /from '\.\.\/helpers\/guest\.js'/;

export function needsGuest(path: string): boolean {
  return GUEST_IMPORT.test(readFileSync(path, 'utf8'));
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
    const guest = base.filter((spec) => needsGuest(spec.moduleId));
    const slow = base.filter((spec) => !guest.includes(spec) && seconds(spec) !== undefined && seconds(spec)! >= 60);
    const longestFirst = (a: TestSpecification, b: TestSpecification) => (seconds(b) ?? 0) - (seconds(a) ?? 0);
    if (guest.length) startGuestBuild();
    const first = [...slow.sort(longestFirst), ...guest.sort(longestFirst)];
    return [...first, ...base.filter((spec) => !first.includes(spec))];
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
