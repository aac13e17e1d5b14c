/**
 * The LUKS2 JSON metadata (LUKS2 On-Disk Format §3): keyslots, digests, segments and config.
 * Untrusted: every field is type-checked and every offset bounded before use. Numbers that can
 * exceed 2^53 are JSON strings in LUKS2 ("offset": "16777216").
 */
import { SparsifyError } from '../../errors.js';
import { badLuks, hashName, type LuksDigest, type LuksHeader, type LuksKdf, type LuksKeyslot, type LuksSegment } from './header.js';

/** What the binary header around the JSON told us. */
export interface JsonContext {
  readonly where: string;
  readonly uuid: string;
  readonly label: string;
  readonly hdrSize: number;
  readonly volumeBytes: number;
}

type Obj = Record<string, unknown>;
const MAX_KEY_BYTES = 512;
const MAX_STRIPES = 4000;
const SECTOR_SIZES = [512, 1024, 2048, 4096];

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Field readers that throw BAD_IMAGE naming the JSON path. */
function fields(where: string, path: string, o: unknown) {
  if (!isObj(o)) throw badLuks(where, `${path} is not an object`);
  const fail = (key: string, what: string) => badLuks(where, `${path}.${key} ${what}`);
  return {
    obj: (key: string): Obj => {
      const v = o[key];
      if (!isObj(v)) throw fail(key, 'is not an object');
      return v;
    },
    str: (key: string): string => {
      const v = o[key];
      if (typeof v !== 'string') throw fail(key, 'is not a string');
      return v;
    },
    int: (key: string, min: number, max: number): number => {
      const v = o[key];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw fail(key, `is not a whole number in ${min}..${max}`);
      return v;
    },
    /** A u64 stored as a decimal string. */
    u64: (key: string): number => {
      const v = o[key];
      const n = typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n)) throw fail(key, 'is not a decimal string below 2^53');
      return n;
    },
    b64: (key: string): Uint8Array => {
      const v = o[key];
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw fail(key, 'is not base64');
      return new Uint8Array(Buffer.from(v, 'base64'));
    },
    has: (key: string): boolean => key in o,
  };
}

function parseKdf(where: string, path: string, o: unknown): LuksKdf {
  const f = fields(where, path, o);
  const type = f.str('type');
  if (type === 'pbkdf2') {
    return { type, hash: f.str('hash'), iterations: f.int('iterations', 1, 0xffffffff), salt: f.b64('salt') };
  }
  if (type === 'argon2i' || type === 'argon2id') {
    // Bounds are checked where the cost is paid (kdf.ts); here only that they are numbers.
    return { type, time: f.int('time', 1, 0xffffffff), memoryKib: f.int('memory', 1, 0xffffffff), cpus: f.int('cpus', 1, 0xffffffff), salt: f.b64('salt') };
  }
  throw new SparsifyError('UNSUPPORTED', `${where}: ${path} uses the KDF "${type}"`);
}

function parseKeyslot(where: string, id: string, o: unknown, bounds: { lo: number; hi: number }): LuksKeyslot | undefined {
  const path = `keyslots.${id}`;
  const f = fields(where, path, o);
  if (f.str('type') !== 'luks2') return undefined; // "reencrypt" slots hold no volume key
  const af = fields(where, `${path}.af`, f.obj('af'));
  if (af.str('type') !== 'luks1') throw new SparsifyError('UNSUPPORTED', `${where}: ${path}.af type "${af.str('type')}"`);
  const area = fields(where, `${path}.area`, f.obj('area'));
  if (area.str('type') !== 'raw') throw new SparsifyError('UNSUPPORTED', `${where}: ${path}.area type "${area.str('type')}"`);
  const keyBytes = f.int('key_size', 1, MAX_KEY_BYTES);
  const stripes = af.int('stripes', 1, MAX_STRIPES);
  const offsetBytes = area.u64('offset');
  const sizeBytes = area.u64('size');
  if (offsetBytes < bounds.lo || offsetBytes + sizeBytes > bounds.hi || sizeBytes < keyBytes * stripes) {
    throw badLuks(where, `${path}.area ${offsetBytes}+${sizeBytes} is not inside the key slot area ${bounds.lo}..${bounds.hi}`);
  }
  const hash = af.str('hash');
  hashName(where, hash);
  return {
    id,
    keyBytes,
    kdf: parseKdf(where, `${path}.kdf`, f.obj('kdf')),
    af: { stripes, hash },
    area: { offsetBytes, sizeBytes, encryption: area.str('encryption'), keyBytes: area.int('key_size', 1, MAX_KEY_BYTES) },
    priority: f.has('priority') ? f.int('priority', 0, 2) : 1,
  };
}

function parseDigest(where: string, id: string, o: unknown): LuksDigest {
  const path = `digests.${id}`;
  const f = fields(where, path, o);
  if (f.str('type') !== 'pbkdf2') throw new SparsifyError('UNSUPPORTED', `${where}: ${path} type "${f.str('type')}"`);
  const keyslots = (o as Obj).keyslots;
  if (!Array.isArray(keyslots) || !keyslots.every((k) => typeof k === 'string')) throw badLuks(where, `${path}.keyslots is not a list of strings`);
  const hash = f.str('hash');
  hashName(where, hash);
  return { keyslots, hash, iterations: f.int('iterations', 1, 0xffffffff), salt: f.b64('salt'), digest: f.b64('digest') };
}

function parseSegment(where: string, segments: Obj, volumeBytes: number, headerBytes: number): LuksSegment {
  const crypt = Object.entries(segments).filter(([, s]) => isObj(s) && s.type === 'crypt');
  if (crypt.length !== 1 || Object.keys(segments).length !== 1) {
    throw new SparsifyError('UNSUPPORTED', `${where}: ${Object.keys(segments).length} segments (a reencryption in progress?)`);
  }
  const [id, s] = crypt[0]!;
  const f = fields(where, `segments.${id}`, s);
  const offsetBytes = f.u64('offset');
  const size = f.str('size');
  const sizeBytes = size === 'dynamic' ? undefined : f.u64('size');
  const sectorBytes = f.int('sector_size', 512, 4096);
  if (!SECTOR_SIZES.includes(sectorBytes)) throw badLuks(where, `segments.${id}.sector_size ${sectorBytes}`);
  if (offsetBytes < headerBytes || offsetBytes + (sizeBytes ?? 0) > volumeBytes || offsetBytes % sectorBytes !== 0) {
    throw badLuks(where, `segments.${id} at ${offsetBytes}+${sizeBytes ?? 'dynamic'} is not after the header inside the ${volumeBytes}-byte volume`);
  }
  return { offsetBytes, sizeBytes, ivTweak: f.u64('iv_tweak'), encryption: f.str('encryption'), sectorBytes };
}

/** Decodes the JSON text of a valid header copy into the common header shape. */
export function parseLuks2Json(text: string, ctx: JsonContext): LuksHeader {
  const { where } = ctx;
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (error) {
    throw badLuks(where, `not JSON (${(error as Error).message})`);
  }
  const f = fields(where, '', root);
  const config = fields(where, 'config', f.obj('config'));
  const requirements = config.has('requirements') ? config.obj('requirements') : undefined;
  const mandatory = requirements?.mandatory;
  if (Array.isArray(mandatory) && mandatory.length > 0) {
    throw new SparsifyError('UNSUPPORTED', `${where}: requires ${mandatory.join(', ')} (cryptsetup must finish it first)`);
  }
  // §2: two header copies, then the key slot area of keyslots_size bytes.
  const slotsLo = 2 * ctx.hdrSize;
  const headerBytes = slotsLo + config.u64('keyslots_size');
  if (headerBytes > ctx.volumeBytes) throw badLuks(where, `header of ${headerBytes} bytes does not fit the ${ctx.volumeBytes}-byte volume`);
  const keyslots = Object.entries(f.obj('keyslots'))
    .map(([id, s]) => parseKeyslot(where, id, s, { lo: slotsLo, hi: headerBytes }))
    .filter((s): s is LuksKeyslot => s !== undefined);
  const digests = Object.entries(f.obj('digests')).map(([id, d]) => parseDigest(where, id, d));
  const segment = parseSegment(where, f.obj('segments'), ctx.volumeBytes, headerBytes);
  return { version: 2, uuid: ctx.uuid, label: ctx.label, keyslots, digests, segment, headerBytes };
}
