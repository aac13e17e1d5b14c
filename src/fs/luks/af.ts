/**
 * The anti-forensic merge of LUKS1 spec §2.4 (also LUKS2 "af": {"type": "luks1"}): the key
 * material is `stripes` blocks of the key's length; all but the last are folded through the
 * hash diffusion H, and the last is XORed in to give the key.
 */
import { createHash } from 'node:crypto';

/** H1 of the spec: each digest-sized chunk i of `block` becomes hash(be32(i) ‖ chunk), cut to the chunk. */
function diffuse(block: Uint8Array, hash: string): Uint8Array {
  const out = new Uint8Array(block.length);
  const digestBytes = createHash(hash).digest().length;
  for (let i = 0, at = 0; at < block.length; i++, at += digestBytes) {
    const chunk = block.subarray(at, Math.min(at + digestBytes, block.length));
    const counter = new Uint8Array(4);
    new DataView(counter.buffer).setUint32(0, i, false);
    const digest = createHash(hash).update(counter).update(chunk).digest();
    out.set(digest.subarray(0, chunk.length), at);
  }
  return out;
}

/** AFmerge: recovers a `keyBytes`-long key from `material` (at least keyBytes·stripes bytes). */
export function afMerge(material: Uint8Array, keyBytes: number, stripes: number, hash: string): Uint8Array {
  if (material.length < keyBytes * stripes) throw new RangeError(`AF material of ${material.length} bytes is shorter than ${keyBytes}×${stripes}`);
  let d: Uint8Array = new Uint8Array(keyBytes);
  for (let s = 0; s < stripes - 1; s++) {
    const stripe = material.subarray(s * keyBytes, (s + 1) * keyBytes);
    for (let i = 0; i < keyBytes; i++) d[i]! ^= stripe[i]!;
    d = diffuse(d, hash);
  }
  const last = material.subarray((stripes - 1) * keyBytes, stripes * keyBytes);
  for (let i = 0; i < keyBytes; i++) d[i]! ^= last[i]!;
  return d;
}
