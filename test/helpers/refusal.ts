import { expect } from 'vitest';
import { SparsifyError } from '../../src/errors.js';

/** Runs `fn`, which must throw a SparsifyError (a refusal), and returns that error. */
export function refusal(fn: () => unknown): SparsifyError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SparsifyError);
    return err as SparsifyError;
  }
  throw new Error('expected a refusal');
}
