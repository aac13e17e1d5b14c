/**
 * The map engine: free space from each filesystem's own allocation structures, read over the
 * disk, with no mount, no root and no VM (free-map.ts). It also runs the planner's byte-level
 * actions, --zero and swap. In copy mode it writes nothing: its ranges join the copier's skip
 * set; in place it discards them (zeroing.ts).
 */
import type { Engine } from '../engine.js';
import { canMap } from './free-map.js';
import { makeZero } from './zeroing.js';

export const mapEngine: Engine<'map'> = {
  id: 'map',
  tools: [],
  needsOverlay: false,
  needsFuseFile: false,
  verbs: ['Reading the free map of', 'Discarding the free blocks of'],
  does: 'read free maps',
  accepts({ fs, freeMap }) {
    if (freeMap?.trusted) {
      const reason =
        fs.type === 'lvm-pv' ? 'LVM: extents no logical volume uses'
        : fs.type === 'luks' ? (freeMap.detail ?? 'LUKS: ciphertext of free blocks')
        : `${fs.type}: free blocks from its own allocation map`;
      return { usable: true, reason };
    }
    if (freeMap) return { usable: false, reason: `${fs.type} map not trusted (${freeMap.reason})`, blame: 'volume' };
    return { usable: false, reason: canMap(fs.type) ? `${fs.type}: free map not read` : `${fs.type}: no free-map reader`, blame: 'volume' };
  },
  open(_ctx, target) {
    return Promise.resolve({
      run: (plan) => makeZero(plan, target),
      [Symbol.asyncDispose]: () => Promise.resolve(),
    });
  },
};
