import { defineConfig } from 'vitest/config';
import SuiteSequencer from './test/helpers/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // Integration suites share loop devices, FUSE and two cores: run files one or two at a time.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    // Slow files first, the shared guest built beside them (test/helpers/sequencer.ts).
    sequence: { sequencer: SuiteSequencer },
    reporters: ['default'],
  },
});
