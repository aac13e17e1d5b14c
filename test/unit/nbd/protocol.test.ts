import { describe, expect, it } from 'vitest';
import { isSparsifyError } from '../../../src/errors.js';
import {
  encodeClientFlags, encodeGoData, encodeMetaContextData, encodeOption, parseExportNameReply, parseGreeting,
  parseInfoReply, parseMetaContextReply, parseOptionReplyHeader,
} from '../../../src/nbd/option-codec.js';
import { errnoName, readUint64 } from '../../../src/nbd/protocol.js';
import {
  checkContentRange, encodeRequestHeader, parseBlockStatus, parseChunkHeader, parseErrorChunk, parseOffsetHole,
  parseSimpleReply,
} from '../../../src/nbd/reply-codec.js';

const hex = (s: string): Uint8Array => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function protocolError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isSparsifyError(err, 'NBD_PROTOCOL')) return err.message;
    throw err;
  }
  throw new Error('expected an NBD_PROTOCOL error');
}

describe('handshake codecs', () => {
  it('parses the newstyle greeting and its flags', () => {
    expect(parseGreeting(hex('4e42444d41474943 49484156454f5054 0003'))).toEqual({ handshakeFlags: 3 });
  });

  it('rejects a bad magic, and the oldstyle greeting as unsupported', () => {
    expect(protocolError(() => parseGreeting(hex('4e42444d41474944 49484156454f5054 0003')))).toMatch(/bad magic/);
    expect(() => parseGreeting(hex('4e42444d41474943 0000420281861253 0000'))).toThrow(/oldstyle/);
    expect(protocolError(() => parseGreeting(hex('4e42444d41474943')))).toMatch(/greeting: 8 bytes, need 18/);
  });

  it('encodes client flags, options, NBD_OPT_GO and NBD_OPT_SET_META_CONTEXT data', () => {
    expect(Buffer.from(encodeClientFlags(3)).toString('hex')).toBe('00000003');
    expect(Buffer.from(encodeOption(8)).toString('hex')).toBe('49484156454f5054' + '00000008' + '00000000');
    expect(Buffer.from(encodeGoData('ab', [0, 3])).toString('hex')).toBe('00000002' + '6162' + '0002' + '0000' + '0003');
    expect(Buffer.from(encodeMetaContextData('ab', ['base:allocation'])).toString('hex')).toBe(
      '00000002' + '6162' + '00000001' + '0000000f' + Buffer.from('base:allocation').toString('hex'),
    );
    expect(Buffer.from(encodeMetaContextData('', [])).toString('hex')).toBe('00000000' + '00000000');
  });

  it('parses option reply headers and checks magic, option and length', () => {
    const ok = hex('0003e889045565a9 00000007 80000006 00000005');
    expect(parseOptionReplyHeader(ok, 7)).toEqual({ option: 7, replyType: 0x80000006, lengthBytes: 5 });
    expect(protocolError(() => parseOptionReplyHeader(ok, 8))).toMatch(/reply to option 7 while option 8 was sent/);
    expect(protocolError(() => parseOptionReplyHeader(hex('0003e889045565aa 00000007 00000001 00000000'), 7))).toMatch(/bad magic/);
    expect(protocolError(() => parseOptionReplyHeader(hex('0003e889045565a9 00000007 00000003 7fffffff'), 7))).toMatch(/oversize length/);
  });

  it('parses NBD_REP_INFO: export, block size, name, unknown', () => {
    expect(parseInfoReply(hex('0000 0000000100000000 014d'))).toEqual({ kind: 'export', sizeBytes: 2 ** 32, transmissionFlags: 0x14d });
    expect(parseInfoReply(hex('0003 00000200 00001000 02000000'))).toEqual({
      kind: 'block-size', minimumBytes: 512, preferredBytes: 4096, maximumBytes: 32 * 2 ** 20,
    });
    expect(parseInfoReply(hex('0001 6469736b'))).toEqual({ kind: 'name', text: 'disk' });
    expect(parseInfoReply(hex('0042 00'))).toEqual({ kind: 'unknown', infoType: 0x42 });
  });

  it('rejects bad NBD_REP_INFO lengths and block sizes that break the MUSTs', () => {
    expect(protocolError(() => parseInfoReply(hex('0000 00000001')))).toMatch(/NBD_INFO_EXPORT is 6 bytes/);
    expect(protocolError(() => parseInfoReply(hex('0003 00000300 00001000 02000000')))).toMatch(/minimum is not a power of 2/);
    expect(protocolError(() => parseInfoReply(hex('0003 04000000 04000000 08000000')))).toMatch(/minimum is not a power of 2 up to 32 MiB/);
    // qemu 7.2's compress filter advertises a 128 KiB cluster as its minimum: tolerated.
    expect(parseInfoReply(hex('0003 00020000 00020000 02000000'))).toMatchObject({ kind: 'block-size', minimumBytes: 131072 });
    expect(protocolError(() => parseInfoReply(hex('0003 00000200 00000100 02000000')))).toMatch(/preferred/);
    expect(protocolError(() => parseInfoReply(hex('0003 00000200 00001000 00000800')))).toMatch(/maximum is below/);
    expect(protocolError(() => parseInfoReply(hex('0000 0020000000000000 0001')))).toMatch(/beyond 2\^53/);
  });

  it('parses meta context replies and the NBD_OPT_EXPORT_NAME reply', () => {
    expect(parseMetaContextReply(hex('00000007' + Buffer.from('base:allocation').toString('hex')))).toEqual({ id: 7, name: 'base:allocation' });
    expect(parseExportNameReply(hex('0000000000100000 0003'))).toEqual({ sizeBytes: 1 << 20, transmissionFlags: 3 });
  });
});

describe('transmission codecs', () => {
  it('encodes a request header', () => {
    const out = new Uint8Array(30);
    encodeRequestHeader(out, 2, { flags: 2, type: 6, cookie: 0xdeadbeef, offsetBytes: 2 ** 40 + 5, lengthBytes: 4096 });
    expect(Buffer.from(out).toString('hex')).toBe(
      '0000' + '25609513' + '0002' + '0006' + '00000000deadbeef' + '0000010000000005' + '00001000',
    );
  });

  it('parses simple replies and structured chunk headers', () => {
    expect(parseSimpleReply(hex('67446698 0000001c 0000000000000009'))).toEqual({ errno: 28, cookie: 9 });
    expect(parseChunkHeader(hex('668e33ef 0001 0005 0000000000000003 0000000c'))).toEqual({
      flags: 1, type: 5, cookie: 3, lengthBytes: 12,
    });
  });

  it('parses block status into merged extents clipped to the request', () => {
    const payload = hex('00000001' + '00001000 00000003' + '00001000 00000003' + '00002000 00000000' + '00100000 00000001');
    expect(parseBlockStatus(payload, { offsetBytes: 4096, lengthBytes: 0x5000 })).toEqual({
      contextId: 1,
      extents: [
        { offsetBytes: 4096, lengthBytes: 0x2000, zero: true, hole: true },
        { offsetBytes: 4096 + 0x2000, lengthBytes: 0x2000, zero: false, hole: false },
        { offsetBytes: 4096 + 0x4000, lengthBytes: 0x1000, zero: false, hole: true },
      ],
    });
  });

  it('rejects block status chunks of bad length or with empty descriptors', () => {
    const req = { offsetBytes: 0, lengthBytes: 4096 };
    expect(protocolError(() => parseBlockStatus(hex('00000001 00001000'), req))).toMatch(/bad length 8/);
    expect(protocolError(() => parseBlockStatus(hex('00000001 00001000 00000000 00'), req))).toMatch(/bad length 13/);
    expect(protocolError(() => parseBlockStatus(hex('00000001 00000000 00000000'), req))).toMatch(/length 0/);
  });

  it('parses error chunks and bounds their message', () => {
    const msg = Buffer.from('disk full').toString('hex');
    expect(parseErrorChunk(hex(`0000001c 0009 ${msg}`), 0x8001)).toEqual({ errno: 28, message: 'disk full', offsetBytes: undefined });
    expect(parseErrorChunk(hex(`00000005 0009 ${msg} 0000000000001000`), 0x8002)).toEqual({ errno: 5, message: 'disk full', offsetBytes: 4096 });
    expect(protocolError(() => parseErrorChunk(hex('00000005 0009 00'), 0x8001))).toMatch(/overruns the chunk/);
    expect(protocolError(() => parseErrorChunk(hex('00000005 0000'), 0x8002))).toMatch(/bad length 6/);
    expect(protocolError(() => parseErrorChunk(hex('00000000 0000'), 0x8001))).toMatch(/error 0/);
  });

  it('parses hole chunks and checks content ranges against the request', () => {
    expect(parseOffsetHole(hex('0000000000001000 00000200'))).toEqual({ offsetBytes: 4096, lengthBytes: 512 });
    expect(protocolError(() => parseOffsetHole(hex('0000000000001000')))).toMatch(/not 12/);
    const req = { offsetBytes: 4096, lengthBytes: 4096 };
    expect(() => checkContentRange(4096, 4096, req, 'x')).not.toThrow();
    expect(protocolError(() => checkContentRange(4095, 10, req, 'data chunk'))).toMatch(/data chunk covers 4095\+10, outside/);
    expect(protocolError(() => checkContentRange(8000, 200, req, 'x'))).toMatch(/outside/);
    expect(protocolError(() => checkContentRange(5000, 0, req, 'x'))).toMatch(/outside/);
  });

  it('names errors and reads 64-bit numbers exactly below 2^53', () => {
    expect(errnoName(28)).toBe('ENOSPC');
    expect(errnoName(42)).toBe('error 42');
    const b = hex('00 001fffffffffffff');
    expect(readUint64(new DataView(b.buffer, b.byteOffset, b.byteLength), 1, 'x')).toBe(2 ** 53 - 1);
  });
});
