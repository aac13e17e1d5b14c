import { describe, expect, it } from 'vitest';
import { isSparsifyError } from '../../../src/errors.js';
import {
  classifyOpenFailure,
  parseCheckResult,
  parseImageInfo,
  qemuReason,
  rawSizeProblem,
  wrongFormatError,
} from '../../../src/qemu/img-parse.js';

// Output captured from qemu-img 7.2 on this machine.
const QCOW2_OVERLAY_CHAIN = JSON.stringify([
  {
    'backing-filename-format': 'raw',
    'virtual-size': 67108864,
    filename: '/tmp/x/ov.qcow2',
    'cluster-size': 65536,
    format: 'qcow2',
    'actual-size': 200704,
    'format-specific': {
      type: 'qcow2',
      data: { compat: '1.1', 'compression-type': 'zlib', 'lazy-refcounts': false, 'refcount-bits': 16, corrupt: false, 'extended-l2': false },
    },
    'full-backing-filename': '/tmp/x/base.raw',
    'backing-filename': 'base.raw',
    'dirty-flag': false,
  },
  { 'virtual-size': 67108864, filename: '/tmp/x/base.raw', format: 'raw', 'actual-size': 4096, 'dirty-flag': false },
]);

const RAW = JSON.stringify({ 'virtual-size': 1048576, filename: 'r.raw', format: 'raw', 'actual-size': 4096, 'dirty-flag': false });

describe('parseImageInfo', () => {
  it('decodes a qcow2 overlay with its backing chain', () => {
    const info = parseImageInfo(QCOW2_OVERLAY_CHAIN, { path: 'ov.qcow2', probed: false });
    expect(info).toEqual({
      path: 'ov.qcow2',
      format: 'qcow2',
      virtualSizeBytes: 67108864,
      actualSizeBytes: 200704,
      clusterSizeBytes: 65536,
      backingFile: '/tmp/x/base.raw',
      backingName: 'base.raw',
      backingFormat: 'raw',
      backingChain: [{ path: '/tmp/x/base.raw', format: 'raw' }],
      dirtyFlag: false,
      corrupt: false,
      qcow2Compat: '1.1',
      probedRaw: false,
      encrypted: false,
      snapshotCount: 0,
    });
  });

  it('sees an encrypted qcow2 and counts internal snapshots', () => {
    const obj = JSON.parse(QCOW2_OVERLAY_CHAIN)[0];
    obj['format-specific'].data.encrypt = { format: 'luks', 'cipher-alg': 'aes-256' };
    obj.snapshots = [{ id: '1', name: 's1' }, { id: '2', name: 's2' }];
    expect(parseImageInfo(JSON.stringify(obj), { path: 'a', probed: false })).toMatchObject({ encrypted: true, snapshotCount: 2 });
    expect(parseImageInfo(JSON.stringify({ ...obj, encrypted: true, 'format-specific': undefined }), { path: 'a', probed: false }).encrypted).toBe(true);
  });

  it('marks a raw image found by probing', () => {
    expect(parseImageInfo(RAW, { path: 'r.raw', probed: true }).probedRaw).toBe(true);
    expect(parseImageInfo(RAW, { path: 'r.raw', probed: false }).probedRaw).toBe(false);
    expect(parseImageInfo(RAW, { path: 'r.raw', probed: true }).backingChain).toEqual([]);
  });

  it('reports a qcow2 that marked itself corrupt', () => {
    const obj = JSON.parse(QCOW2_OVERLAY_CHAIN)[0];
    obj['format-specific'].data.corrupt = true;
    expect(parseImageInfo(JSON.stringify(obj), { path: 'a', probed: false }).corrupt).toBe(true);
  });

  it.each([
    ['not JSON', 'qemu-img: oops'],
    ['an empty chain', '[]'],
    ['a negative size', JSON.stringify({ format: 'raw', 'virtual-size': -1 })],
    ['a size that is not an integer', JSON.stringify({ format: 'raw', 'virtual-size': 1.5 })],
    ['a missing format', JSON.stringify({ 'virtual-size': 512 })],
    ['a string size', JSON.stringify({ format: 'raw', 'virtual-size': '512' })],
  ])('refuses %s with TOOL_FAILED', (_, text) => {
    expect(() => parseImageInfo(text, { path: 'a', probed: false })).toThrowError(
      expect.objectContaining({ code: 'TOOL_FAILED' }),
    );
  });
});

describe('parseCheckResult', () => {
  it('reads corruptions of a truncated qcow2', () => {
    const text = JSON.stringify({
      'image-end-offset': 16973824,
      'total-clusters': 1024,
      corruptions: 258,
      'check-errors': 0,
      'allocated-clusters': 512,
      filename: 't.qcow2',
      format: 'qcow2',
    });
    expect(parseCheckResult(text)).toEqual({
      checked: true,
      corruptions: 258,
      leaks: 0,
      checkErrors: 0,
      imageEndOffsetBytes: 16973824,
    });
  });

  it('reads leaks and defaults absent counters to 0', () => {
    expect(parseCheckResult(JSON.stringify({ leaks: 3 }))).toMatchObject({ leaks: 3, corruptions: 0, checkErrors: 0 });
  });
});

describe('classifyOpenFailure', () => {
  const path = '/images/vm.qcow2';

  it.each([
    `qemu-img: Could not open '${path}': Failed to get shared "write" lock\nIs another process using the image [${path}]?\n`,
    `qemu-storage-daemon: --blockdev {"driver":"qcow2"}: Failed to get "write" lock\nIs another process using the image [${path}]?\n`,
  ])('maps a lock failure to IN_USE', (stderr) => {
    const err = classifyOpenFailure(stderr, path);
    expect(err?.code).toBe('IN_USE');
    expect(err?.message).toBe(`${path} is in use by another process (a running VM?); shut it down first`);
  });

  it('names the backing file when that is what is locked', () => {
    const stderr = `qemu-storage-daemon: Failed to get shared "write" lock\nIs another process using the image [/images/base.raw]?`;
    expect(classifyOpenFailure(stderr, path)?.message).toMatch(/^\/images\/base\.raw is in use/);
  });

  it('tells a missing image from a missing backing file', () => {
    const self = classifyOpenFailure(`qemu-img: Could not open '${path}': Could not open '${path}': No such file or directory`, path);
    expect(self?.code).toBe('NOT_FOUND');
    expect(self?.message).toBe(`${path} does not exist; check the path`);
    const backing = classifyOpenFailure(`qemu-img: Could not open '/gone.raw': Could not open '/gone.raw': No such file or directory`, path);
    expect(backing?.code).toBe('NOT_FOUND');
    expect(backing?.message).toMatch(/^backing file \/gone\.raw of \/images\/vm\.qcow2 does not exist/);
  });

  it('maps an unknown driver and a directory to USAGE', () => {
    expect(classifyOpenFailure(`qemu-img: Could not open 'a': Unknown driver 'bogus'`, 'a')?.message).toBe(
      "unknown image format 'bogus'; check --format",
    );
    expect(classifyOpenFailure(`qemu-img: Could not open '/tmp': 'file' driver requires '/tmp' to be a regular file`, '/tmp')?.code).toBe('USAGE');
  });

  it('leaves other text to the caller', () => {
    expect(classifyOpenFailure(`qemu-img: Could not open 'r.raw': Image is not in qcow2 format`, 'r.raw')).toBeUndefined();
  });
});

describe('messages', () => {
  it('says what to do about a wrong --format', () => {
    const err = wrongFormatError('IN', 'qcow2', 'raw');
    expect(isSparsifyError(err, 'BAD_IMAGE')).toBe(true);
    expect(err.message).toBe('IN is not a qcow2 image (it looks like raw); check --format, or use --convert to choose the output format');
  });

  it('refuses raw files that cannot be disks', () => {
    expect(rawSizeProblem('f', 0)?.message).toBe('f is not a disk image (it is empty)');
    expect(rawSizeProblem('f', 1000)?.code).toBe('BAD_IMAGE');
    expect(rawSizeProblem('f', 1024)).toBeUndefined();
  });

  it('strips qemu prefixes from a reason', () => {
    expect(qemuReason(`qemu-img: Could not open 'r.raw': Could not open 'r.raw': Invalid argument\n`)).toBe('Invalid argument');
    expect(qemuReason(`qemu-img: x.q: Invalid parameter 'bogus'\n`)).toBe("x.q: Invalid parameter 'bogus'");
  });
});
