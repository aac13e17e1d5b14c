import { describe, expect, it } from 'vitest';
import { FrameReader, commandFrame, driveCommand, errorLineOf, quoteArg } from '../../../../src/engines/appliance/guestfish-protocol.js';

describe('quoteArg', () => {
  it('double-quotes every argument and escapes what guestfish would read otherwise', () => {
    expect(quoteArg('/dev/sda1')).toBe('"/dev/sda1"');
    expect(quoteArg('')).toBe('""');
    expect(quoteArg('a "b" \\c')).toBe('"a \\"b\\" \\\\c"');
    expect(quoteArg('x\ny\tz')).toBe('"x\\x0ay\\x09z"');
    expect(quoteArg('| !ls ~root')).toBe('"| !ls ~root"');
    expect(quoteArg('été')).toBe('"été"');
  });

  it('refuses a NUL byte', () => {
    expect(() => quoteArg('a\0b')).toThrow(/NUL/);
  });
});

describe('commandFrame', () => {
  it('sends the command, then a mark on stdout and one on stderr', () => {
    expect(commandFrame('t0k', 7, 'mount', ['/dev/sda1', '/'])).toBe('-mount "/dev/sda1" "/"\necho @@sparsify-t0k-7\n-__sparsify_t0k_7\n');
  });

  it('refuses a command name guestfish would give to a shell or read as a comment', () => {
    for (const bad of ['!ls', '<!ls', '#x', 'mount /', '', '-mount']) expect(() => commandFrame('t', 1, bad, [])).toThrow(/not a guestfish command/);
  });
});

describe('driveCommand', () => {
  const drive = { socketPath: '/tmp/sparsify-x/qsd.sock', exportName: 'sparsify', readOnly: false, discard: true };

  it('adds an NBD export as a raw drive with discard', () => {
    expect(driveCommand(drive)).toEqual([
      'add-drive',
      'sparsify',
      'protocol:nbd',
      'server:unix:/tmp/sparsify-x/qsd.sock',
      'format:raw',
      'readonly:false',
      'discard:enable',
    ]);
  });

  it('never asks for discard on a read-only drive', () => {
    expect(driveCommand({ ...drive, readOnly: true })).toContain('discard:disable');
    expect(driveCommand({ ...drive, readOnly: true })).toContain('readonly:true');
    expect(driveCommand({ ...drive, discard: false })).toContain('discard:disable');
  });

  it('refuses a socket path that libguestfs would split', () => {
    expect(() => driveCommand({ ...drive, socketPath: '/tmp/my dir/qsd.sock' })).toThrow(/blanks or quotes/);
    expect(() => driveCommand({ ...drive, socketPath: "/tmp/it's/qsd.sock" })).toThrow(/blanks or quotes/);
  });
});

describe('errorLineOf', () => {
  it("gives libguestfs' error line without its prefix", () => {
    const stderr = "*stdin*:3: libguestfs: error: mount: call launch before using this function\n(in guestfish, don't forget to use the 'run' command)\n";
    expect(errorLineOf('mount', stderr)).toBe('mount: call launch before using this function');
  });

  it("gives guestfish's own complaints", () => {
    expect(errorLineOf('mount', 'error: incorrect number of arguments\nusage: mount mountable mountpoint\n')).toBe('error: incorrect number of arguments');
    expect(errorLineOf('add-drive', 'add-drive: unknown optional argument "badopt:1"\n')).toBe('add-drive: unknown optional argument "badopt:1"');
    expect(errorLineOf('add-drive', "guestfish: 'maybe': invalid boolean value, use 'true' or 'false'\n")).toMatch(/invalid boolean/);
  });

  it('takes warnings and debug output for what they are', () => {
    expect(errorLineOf('run', 'libguestfs: warning: something odd\n[    0.000000] Linux version 6.1\n')).toBeUndefined();
    expect(errorLineOf('run', '')).toBeUndefined();
  });
});

describe('FrameReader', () => {
  it('splits replies at the marks, however the output arrives', async () => {
    const frames = new FrameReader('tk');
    const first = frames.expect('blockdev-getsize64');
    const second = frames.expect('mount');
    const stdout = '67108864\n@@sparsify-tk-1\n@@sparsify-tk-2\n';
    const stderr = '__sparsify_tk_1: unknown command\n*stdin*:4: libguestfs: error: mount: no such device\n__sparsify_tk_2: unknown command\n';
    // One byte at a time, stderr first: a mark split across chunks still counts once whole.
    for (const ch of stderr) frames.stderr(ch);
    for (const ch of stdout) frames.stdout(ch);
    expect([first.n, second.n]).toEqual([1, 2]);
    expect(await first.reply).toEqual({ stdout: '67108864\n' });
    expect(await second.reply).toEqual({
      stdout: '',
      error: { line: 'mount: no such device', stderr: '*stdin*:4: libguestfs: error: mount: no such device\n' },
    });
  });

  it('waits for both marks', async () => {
    const frames = new FrameReader('tk');
    const { reply } = frames.expect('ping-daemon');
    let settled = false;
    void reply.then(() => (settled = true));
    frames.stdout('@@sparsify-tk-1\n');
    await Promise.resolve();
    expect(settled).toBe(false);
    frames.stderr('__sparsify_tk_1: unknown command\n');
    expect(await reply).toEqual({ stdout: '' });
  });

  it('fails every waiting command, and every later one, once guestfish has gone', async () => {
    const frames = new FrameReader('tk');
    const waiting = frames.expect('fstrim').reply;
    frames.close(new Error('guestfish was killed by SIGKILL'));
    await expect(waiting).rejects.toThrow(/SIGKILL/);
    await expect(frames.expect('ping-daemon').reply).rejects.toThrow(/SIGKILL/);
  });
});
