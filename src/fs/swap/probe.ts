/** The Linux swap detector: a signature of the one table in header.ts, and the v1 header behind it. */
import type { BlockReader } from '../../disk/types.js';
import { alwaysLive, labelField, readAt, type Detected } from '../probe-common.js';
import type { ProbeResult } from '../types.js';
import { SWAP_INFO_BYTES, SWAP_VERSION_1, findSwapSignature, parseSwapInfo } from './header.js';

/**
 * Swap v1 (with its UUID and label) or v0, or a swap area holding a hibernation image
 * (`hibernated`, which the planner leaves alone). A v1 header is confirmed live when its version
 * is 1 and its last page lies inside the volume.
 */
export async function detectSwap(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  const found = await findSwapSignature(reader, head);
  if (!found) return undefined;
  const { kind, pageBytes, magicOffsetBytes } = found;
  if (kind === 'v0') {
    const result: ProbeResult = { type: 'swap', blockSizeBytes: pageBytes, detail: 'swap v0' };
    return { result, magicOffsetBytes, confirm: alwaysLive };
  }
  const info = parseSwapInfo(await readAt(reader, head, 0, SWAP_INFO_BYTES));
  const result: ProbeResult = {
    type: 'swap',
    uuid: info.uuid,
    blockSizeBytes: pageBytes,
    ...labelField(info.label),
    ...(kind === 'hibernated' ? { detail: 'swap with hibernation image', hibernated: true } : {}),
  };
  const live = info.version === SWAP_VERSION_1 && info.lastPage > 0 && info.lastPage * pageBytes < reader.sizeBytes;
  return { result, magicOffsetBytes, confirm: () => Promise.resolve(live) };
}
