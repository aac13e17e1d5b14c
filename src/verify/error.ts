import { SparsifyError } from '../errors.js';

/** The one-line error of a failed --verify (exit 1). */
export function verifyError(message: string, hint: string): SparsifyError {
  return new SparsifyError('VERIFY_FAILED', message, { hint });
}
