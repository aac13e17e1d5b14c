/**
 * Whether Windows left the volume hibernated, or shut down with Fast Startup (a hibernation of
 * the kernel session): then its metadata in memory is newer than on disk. ntfs-3g decides it
 * from the first 4096 bytes of /hiberfil.sys (volume.c, ntfs_volume_check_hiberfile): a file
 * shorter than that, or starting with "hibr" or "HIBR", refuses a read-write mount. This reader
 * also refuses "wake"/"WAKE" (a resumed image never cleared), which ntfs-3g lets pass: a
 * fallback costs less than a wrong map.
 *
 * hiberfil.sys is found as ntfs-3g finds it, by name in the root directory's $I30 index: the
 * entries of the resident $INDEX_ROOT, then every INDX block reachable from it through
 * $INDEX_ALLOCATION (Linux-NTFS "Attributes: $INDEX_ROOT, $INDEX_ALLOCATION", "Concepts:
 * Directory Tree"; layout.h INDEX_ROOT, INDEX_BLOCK, INDEX_ENTRY, FILE_NAME_ATTR). The whole
 * tree is walked rather than searched by collation order, so no upcase table is needed; a
 * root directory holds tens of entries.
 */
import {
  ATTR_FLAG,
  ATTR_TYPE,
  MFT_RECORD,
  NTFS_BLOCK_BYTES,
  badNtfs,
  mftReference,
  s64le,
  untrusted,
  type MftReference,
  type Where,
} from './common.js';
import { hasAscii, isPowerOfTwo, utf16le, viewOf } from '../../binary/bytes.js';
import { applyUpdateSequence } from './record.js';
import { readAttributeStream } from './stream.js';
import type { NtfsVolume, RunStream } from './volume.js';

const DIRECTORY_INDEX = '$I30';
const HIBERFIL_NAME = 'hiberfil.sys';
/** ntfs-3g's NTFS_HIBERFILE_HEADER_SIZE. */
const HIBERFIL_HEADER_BYTES = 4096;
const HIBERNATION_SIGNATURES: readonly string[] = ['hibr', 'HIBR', 'wake', 'WAKE'];

/** INDEX_ROOT: index block size, then the INDEX_HEADER. */
const IR = { blockBytes: 0x08, header: 0x10 } as const;
/** INDEX_BLOCK ("INDX"): its VCN, then the INDEX_HEADER. */
const IB = { vcn: 0x10, header: 0x18 } as const;
const IB_HEADER_BYTES = 0x28;
/** INDEX_HEADER, relative to its own start. */
const IH = { entriesOffset: 0x00, indexLength: 0x04 } as const;
const IH_BYTES = 0x10;
/** INDEX_ENTRY and its FILE_NAME_ATTR key. */
const IE = { length: 0x08, keyLength: 0x0a, flags: 0x0c, key: 0x10 } as const;
const IE_MIN_BYTES = 0x10;
const INDEX_ENTRY_NODE = 0x0001;
const INDEX_ENTRY_END = 0x0002;
const FN = { nameLength: 0x40, name: 0x42 } as const;
const MAX_INDEX_BLOCK_BYTES = 65536;

/** What one index node holds: file entries, and the VCNs of child blocks. */
export interface IndexNode {
  readonly files: readonly { readonly reference: MftReference; readonly name: string }[];
  readonly children: readonly number[];
}

function parseEntry(bytes: Uint8Array, view: DataView, at: number, length: number, where: Where): string {
  const keyLength = view.getUint16(at + IE.keyLength, true);
  if (keyLength < FN.name || IE.key + keyLength > length) {
    badNtfs(where, at + IE.keyLength, `index key of ${keyLength} bytes does not fit the entry`);
  }
  const nameLength = bytes[at + IE.key + FN.nameLength]!;
  if (FN.name + 2 * nameLength > keyLength) badNtfs(where, at + IE.key + FN.nameLength, 'file name runs past its index key');
  return utf16le(bytes, at + IE.key + FN.name, 2 * nameLength);
}

/** Decodes the entries after the INDEX_HEADER at `headerAt`, which must end inside `limit`. */
function parseIndexNode(bytes: Uint8Array, headerAt: number, limit: number, where: Where): IndexNode {
  const view = viewOf(bytes);
  if (headerAt + IH_BYTES > limit) badNtfs(where, headerAt, 'index header is truncated');
  const start = headerAt + view.getUint32(headerAt + IH.entriesOffset, true);
  const end = headerAt + view.getUint32(headerAt + IH.indexLength, true);
  if (start < headerAt + IH_BYTES || end > limit || start > end) badNtfs(where, headerAt, 'index entries lie outside the index');
  const files: { reference: MftReference; name: string }[] = [];
  const children: number[] = [];
  for (let at = start; at + IE_MIN_BYTES <= end; ) {
    const length = view.getUint16(at + IE.length, true);
    const flags = view.getUint16(at + IE.flags, true);
    if (length < IE_MIN_BYTES || length % 8 !== 0 || at + length > end) {
      badNtfs(where, at + IE.length, `index entry length ${length} does not fit`);
    }
    if (flags & INDEX_ENTRY_NODE) {
      const vcn = length >= IE_MIN_BYTES + 8 ? s64le(view, at + length - 8) : undefined;
      if (vcn === undefined || vcn < 0) badNtfs(where, at, 'index entry has no valid child VCN');
      children.push(vcn);
    }
    if (flags & INDEX_ENTRY_END) return { files, children };
    files.push({ reference: mftReference(view, at), name: parseEntry(bytes, view, at, length, where) });
    at += length;
  }
  return badNtfs(where, end, 'index has no end entry');
}

async function readIndexBlock(
  volume: NtfsVolume,
  allocation: RunStream,
  vcn: number,
  blockBytes: number,
): Promise<IndexNode> {
  // Child VCNs count clusters, or 512-byte units when a cluster is larger than an index block.
  const vcnBytes = volume.geometry.clusterBytes <= blockBytes ? volume.geometry.clusterBytes : NTFS_BLOCK_BYTES;
  const offset = vcn * vcnBytes;
  if (!Number.isSafeInteger(offset) || offset + blockBytes > allocation.dataBytes) {
    badNtfs(allocation.where, 0, `index block VCN ${vcn} lies beyond the ${allocation.dataBytes}-byte index allocation`);
  }
  const where: Where = { what: `root directory index block at VCN ${vcn}`, offsetBytes: volume.volumeOffset(allocation, offset) };
  const block = await volume.readStream(allocation, offset, blockBytes);
  if (!hasAscii(block, 0, 'INDX')) badNtfs(where, 0, 'no INDX signature');
  if (!applyUpdateSequence(block, where, IB_HEADER_BYTES)) badNtfs(where, 0, 'update sequence mismatch (torn write)');
  if (s64le(viewOf(block), IB.vcn) !== vcn) badNtfs(where, IB.vcn, 'index block says it is at another VCN');
  return parseIndexNode(block, IB.header, blockBytes, where);
}

/** MFT references of the files named `name` (case-insensitively) in the root directory. */
async function findInRootDirectory(volume: NtfsVolume, name: string): Promise<MftReference[]> {
  const root = await volume.readRecord(MFT_RECORD.root, volume.mft.where);
  if (!root.inUse || !root.isDirectory) badNtfs(root.where, 0, 'the root directory record is not an in-use directory');
  const indexRoot = await readAttributeStream(volume, root, ATTR_TYPE.indexRoot, DIRECTORY_INDEX);
  if (!indexRoot?.resident) badNtfs(root.where, 0, 'the root directory has no resident $INDEX_ROOT');
  const value = indexRoot.value;
  if (value.length < IR.header + IH_BYTES) badNtfs(root.where, 0, '$INDEX_ROOT is truncated');
  const blockBytes = viewOf(value).getUint32(IR.blockBytes, true);
  if (!isPowerOfTwo(blockBytes) || blockBytes < NTFS_BLOCK_BYTES || blockBytes > MAX_INDEX_BLOCK_BYTES) {
    badNtfs(root.where, 0, `index block size ${blockBytes} is not a power of two from 512 to 64 KiB`);
  }
  const rootWhere = { what: 'root directory $INDEX_ROOT', offsetBytes: root.where.offsetBytes };
  const top = parseIndexNode(value, IR.header, value.length, rootWhere);
  const found = top.files.filter((f) => f.name.toLowerCase() === name);
  if (top.children.length === 0) return found.map((f) => f.reference);
  const allocation = await readAttributeStream(volume, root, ATTR_TYPE.indexAllocation, DIRECTORY_INDEX);
  if (!allocation || allocation.resident) badNtfs(root.where, 0, 'the root index has child blocks but no $INDEX_ALLOCATION');
  const pending = [...top.children];
  const visited = new Set<number>();
  for (let vcn = pending.pop(); vcn !== undefined; vcn = pending.pop()) {
    if (visited.has(vcn)) continue;
    visited.add(vcn);
    const node = await readIndexBlock(volume, allocation, vcn, blockBytes);
    found.push(...node.files.filter((f) => f.name.toLowerCase() === name));
    pending.push(...node.children);
  }
  return found.map((f) => f.reference);
}

/**
 * Why the volume must be treated as hibernated, or undefined when hiberfil.sys is absent or
 * cleared; NtfsUntrusted when hiberfil.sys is there but cannot be checked.
 */
export async function readHibernationReason(volume: NtfsVolume): Promise<string | undefined> {
  const references = await findInRootDirectory(volume, HIBERFIL_NAME);
  for (const reference of references) {
    const record = await volume.readRecord(reference.record, volume.mft.where);
    const live = record.inUse && record.baseRecord === 0 && (reference.sequence === 0 || reference.sequence === record.sequence);
    if (!live) untrusted(`the root directory names hiberfil.sys in MFT record ${reference.record}, which is not in use`);
    const data = await readAttributeStream(volume, record, ATTR_TYPE.data, '');
    if (!data) untrusted('hiberfil.sys has no data to check for a hibernation signature');
    if (data.flags & (ATTR_FLAG.compressionMask | ATTR_FLAG.encrypted)) {
      untrusted('hiberfil.sys is compressed or encrypted: its signature cannot be checked');
    }
    if (data.dataBytes < HIBERFIL_HEADER_BYTES) {
      return `hiberfil.sys is shorter than ${HIBERFIL_HEADER_BYTES} bytes (ntfs-3g: a hibernated non-system partition)`;
    }
    const head = await volume.readStream(data, 0, 4);
    const signature = HIBERNATION_SIGNATURES.find((s) => hasAscii(head, 0, s));
    if (signature) return `Windows is hibernated or shut down with Fast Startup (hiberfil.sys starts with "${signature}")`;
  }
  return undefined;
}
