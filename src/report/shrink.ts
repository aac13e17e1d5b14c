/** The closing text's part about --shrink: the virtual size before and after, then each volume's old and new size or why it kept it. */
import type { ShrinkReport, ShrinkVolumeReport } from '../shrink/run.js';
import { humanBytes } from '../util/size.js';

/** The lines of the shrink section (no trailing blank line). */
export function formatShrink(s: ShrinkReport): string[] {
  const out = [`Shrunk: virtual size ${humanBytes(s.virtualSizeBeforeBytes)} -> ${humanBytes(s.virtualSizeAfterBytes)}`];
  const width = Math.max(...s.volumes.map((v) => v.name.length));
  for (const v of s.volumes) out.push(`  ${v.name.padEnd(width)}  ${describe(v)}`);
  return out;
}

function describe(v: ShrinkVolumeReport): string {
  const moved = v.newOffsetBytes === v.oldOffsetBytes ? '' : `, moved down ${humanBytes(v.oldOffsetBytes - v.newOffsetBytes)}`;
  const sizes = `${humanBytes(v.oldSizeBytes)} -> ${humanBytes(v.newSizeBytes)}`;
  if (v.action === 'resized') {
    const floor = v.minimumBytes === undefined ? '' : ` (minimum ${humanBytes(v.minimumBytes)} + margin ${humanBytes(v.marginBytes ?? 0)})`;
    const files = v.filesChecked === undefined ? '' : `, ${v.filesChecked} files identical`;
    return `resized ${sizes}${floor}${files}${moved}`;
  }
  if (v.action === 'remade') return `swap made again, ${humanBytes(v.newSizeBytes)}, UUID and label kept${moved}`;
  return `kept ${humanBytes(v.oldSizeBytes)}${v.reason ? `: ${v.reason}` : ''}${moved}`;
}
