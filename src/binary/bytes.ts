/**
 * Small readers for on-disk structures. Images are untrusted: callers check lengths first, and
 * a 64-bit field that does not fit a safe integer comes back as Infinity so that every
 * "is it inside the disk?" comparison fails closed.
 */

/** A DataView over exactly the bytes of `bytes`. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** An unsigned little-endian 64-bit field as a number, or Infinity when above 2^53 − 1. */
export function u64le(view: DataView, offset: number): number {
  const value = view.getBigUint64(offset, true);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(value);
}

/** An unsigned big-endian 64-bit field as a number, or Infinity when above 2^53 − 1. */
export function u64be(view: DataView, offset: number): number {
  const value = view.getBigUint64(offset, false);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(value);
}

/** Whether `bytes` holds the ASCII text `text` at `offset`. */
export function hasAscii(bytes: Uint8Array, offset: number, text: string): boolean {
  if (offset < 0 || offset + text.length > bytes.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (bytes[offset + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}

/** A NUL-terminated (or full-length) UTF-8 string field. */
export function cString(bytes: Uint8Array, offset: number, length: number): string {
  const field = bytes.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return new TextDecoder('utf-8').decode(end < 0 ? field : field.subarray(0, end));
}

/** A UTF-16LE string field, up to the first NUL code unit. */
export function utf16le(bytes: Uint8Array, offset: number, length: number): string {
  let text = '';
  for (let i = offset; i + 1 < offset + length && i + 1 < bytes.length; i += 2) {
    const unit = bytes[i]! | (bytes[i + 1]! << 8);
    if (unit === 0) break;
    text += String.fromCharCode(unit);
  }
  return text;
}

/** Whether `n` is a positive power of two (block, sector and cluster sizes). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

/** Whether every byte of `bytes` is zero. */
export function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

function hex(bytes: Uint8Array, order: readonly number[], offset: number): string {
  return order.map((i) => bytes[offset + i]!.toString(16).padStart(2, '0')).join('');
}

/** A 16-byte UUID stored in byte order (ext, xfs, btrfs, swap), as 8-4-4-4-12 lower-case hex. */
export function uuidText(bytes: Uint8Array, offset: number): string {
  return [
    hex(bytes, [0, 1, 2, 3], offset),
    hex(bytes, [4, 5], offset),
    hex(bytes, [6, 7], offset),
    hex(bytes, [8, 9], offset),
    hex(bytes, [10, 11, 12, 13, 14, 15], offset),
  ].join('-');
}

/** A GUID in the mixed-endian EFI layout (UEFI spec Appendix A): first three fields little-endian. */
export function guidText(bytes: Uint8Array, offset: number): string {
  return [
    hex(bytes, [3, 2, 1, 0], offset),
    hex(bytes, [5, 4], offset),
    hex(bytes, [7, 6], offset),
    hex(bytes, [8, 9], offset),
    hex(bytes, [10, 11, 12, 13, 14, 15], offset),
  ].join('-');
}
