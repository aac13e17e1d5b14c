import { describe, expect, it } from 'vitest';
import { SparsifyError } from '../../../src/errors.js';
import { explainSystemError, pathError, renamePathError } from '../../../src/util/errno.js';

const sysError = (code: string, path: string) => Object.assign(new Error(`${code}: failed, open '${path}'`), { code, path });

describe('pathError', () => {
  it.each([
    ['EROFS', /^output \/x\/o\.raw: the filesystem is read-only$/, 'BAD_PATH'],
    ['EACCES', /^output \/x\/o\.raw: permission denied$/, 'BAD_PATH'],
    ['ENAMETOOLONG', /^output \/x\/o\.raw: the name is too long/, 'BAD_PATH'],
    ['ENOENT', /^output \/x\/o\.raw: the directory \/x does not exist$/, 'BAD_PATH'],
    ['ENOSPC', /^output \/x\/o\.raw: no space left$/, 'NO_SPACE'],
  ])('%s becomes one line naming the path, with a hint', (code, message, errorCode) => {
    const err = pathError(sysError(code, '/x/o.raw'), 'output', '/x/o.raw') as SparsifyError;
    expect(err).toBeInstanceOf(SparsifyError);
    expect(err.message).toMatch(message);
    expect(err.code).toBe(errorCode);
    expect(err.hint).toBeTruthy();
  });

  it('leaves errors it does not know alone', () => {
    const odd = sysError('EWEIRD', '/x');
    expect(pathError(odd, 'output', '/x')).toBe(odd);
    const plain = new Error('no code');
    expect(pathError(plain, 'output', '/x')).toBe(plain);
  });

  it('renames the path of an explained error (temporary name → output name)', () => {
    const first = pathError(sysError('EACCES', '/x/.o.sparsify-1.partial'), 'file', '/x/.o.sparsify-1.partial');
    expect((renamePathError(first, 'output', '/x/o') as Error).message).toBe('output /x/o: permission denied');
  });

  it('the CLI fallback uses the path a system error carries', () => {
    expect((explainSystemError(sysError('EROFS', '/ro/f')) as Error).message).toBe('file /ro/f: the filesystem is read-only');
  });
});
