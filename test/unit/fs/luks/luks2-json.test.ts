import { describe, expect, it } from 'vitest';
import { parseLuks2Json, type JsonContext } from '../../../../src/fs/luks/luks2-json.js';
import { refusal } from '../../../helpers/refusal.js';

const CTX: JsonContext = { where: 'LUKS2 JSON area at byte 4096', uuid: 'u', label: 'l', hdrSize: 16384, volumeBytes: 64 << 20 };
const SALT = Buffer.alloc(32, 7).toString('base64');

/** A JSON area as cryptsetup 2.6 writes it for one argon2id key slot (luksDump of the fixture). */
function metadata(): any {
  return {
    keyslots: {
      '0': {
        type: 'luks2', key_size: 32,
        af: { type: 'luks1', stripes: 4000, hash: 'sha256' },
        area: { type: 'raw', offset: '32768', size: '131072', encryption: 'aes-xts-plain64', key_size: 32 },
        kdf: { type: 'argon2id', time: 4, memory: 8192, cpus: 1, salt: SALT },
      },
    },
    tokens: {},
    segments: { '0': { type: 'crypt', offset: '16777216', size: 'dynamic', iv_tweak: '0', encryption: 'aes-xts-plain64', sector_size: 4096 } },
    digests: { '0': { type: 'pbkdf2', keyslots: ['0'], segments: ['0'], hash: 'sha256', iterations: 1000, salt: SALT, digest: SALT } },
    config: { json_size: '12288', keyslots_size: '16744448' },
  };
}

const parse = (m: unknown) => parseLuks2Json(JSON.stringify(m), CTX);

describe('parseLuks2Json', () => {
  it('decodes key slot, KDF costs, AF, digest and segment', () => {
    const h = parse(metadata());
    expect(h.keyslots).toEqual([{
      id: '0', keyBytes: 32, priority: 1,
      kdf: { type: 'argon2id', time: 4, memoryKib: 8192, cpus: 1, salt: new Uint8Array(32).fill(7) },
      af: { stripes: 4000, hash: 'sha256' },
      area: { offsetBytes: 32768, sizeBytes: 131072, encryption: 'aes-xts-plain64', keyBytes: 32 },
    }]);
    expect(h.digests[0]).toMatchObject({ keyslots: ['0'], hash: 'sha256', iterations: 1000 });
    expect(h.segment).toEqual({ offsetBytes: 16777216, sizeBytes: undefined, ivTweak: 0, encryption: 'aes-xts-plain64', sectorBytes: 4096 });
    expect(h.headerBytes).toBe(2 * 16384 + 16744448);
  });

  it('refuses a key slot area outside the key slot area of the header', () => {
    const m = metadata();
    m.keyslots['0'].area.offset = '100';
    expect(refusal(() => parse(m)).message).toBe('LUKS2 JSON area at byte 4096: keyslots.0.area 100+131072 is not inside the key slot area 32768..16777216');
  });

  it('refuses offsets that are numbers, negative or beyond 2^53, naming the field', () => {
    for (const offset of [32768, '-1', '99999999999999999999']) {
      const m = metadata();
      m.keyslots['0'].area.offset = offset;
      expect(refusal(() => parse(m)).message).toBe('LUKS2 JSON area at byte 4096: keyslots.0.area.offset is not a decimal string below 2^53');
    }
  });

  it('refuses a segment beyond the volume or inside the header', () => {
    const m = metadata();
    m.segments['0'].offset = String(128 << 20);
    expect(refusal(() => parse(m)).code).toBe('BAD_IMAGE');
    m.segments['0'].offset = '4096';
    expect(refusal(() => parse(m)).message).toMatch(/segments\.0 at 4096\+dynamic is not after the header/);
  });

  it('says UNSUPPORTED for a reencryption in progress and for unknown KDFs', () => {
    const two = metadata();
    two.segments['1'] = { ...two.segments['0'], offset: '33554432' };
    expect(refusal(() => parse(two))).toMatchObject({ code: 'UNSUPPORTED', message: expect.stringMatching(/2 segments/) });
    const req = metadata();
    req.config.requirements = { mandatory: ['online-reencrypt-v2'] };
    expect(refusal(() => parse(req))).toMatchObject({ code: 'UNSUPPORTED', message: expect.stringMatching(/requires online-reencrypt-v2/) });
    const kdf = metadata();
    kdf.keyslots['0'].kdf.type = 'scrypt';
    expect(refusal(() => parse(kdf))).toMatchObject({ code: 'UNSUPPORTED', message: expect.stringMatching(/uses the KDF "scrypt"/) });
  });

  it('refuses text that is not JSON and fields of the wrong type', () => {
    expect(refusal(() => parseLuks2Json('{"keyslots":', CTX)).message).toMatch(/^LUKS2 JSON area at byte 4096: not JSON/);
    const m = metadata();
    m.keyslots['0'].kdf.memory = '8192';
    expect(refusal(() => parse(m)).message).toMatch(/keyslots\.0\.kdf\.memory is not a whole number/);
  });
});
