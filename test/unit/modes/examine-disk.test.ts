/** examineDisk over a disk in memory: which maps the planner reads, and --ignore VG. */
import { describe, expect, it } from 'vitest';
import { makeContext } from '../../../src/context.js';
import type { Engine } from '../../../src/engines/engine.js';
import { mapEngine } from '../../../src/engines/map/engine.js';
import { examineDisk } from '../../../src/modes/volume-pass.js';
import type { LazyPlanInput } from '../../../src/plan/plan-volumes.js';
import { refused } from '../../../src/util/verdict.js';
import { linear, makePv, vgText } from '../layout/lvm-fixtures.js';
import { memoryDevice } from '../../helpers/mem-device.js';

const input: LazyPlanInput = { ignore: [], zero: [], noZero: false, engine: 'auto', root: false, appliance: () => Promise.resolve(refused('no libguestfs here')) };

/** A whole-disk PV of the VG "VG" with two LVs holding no filesystem. */
const disk = () => memoryDevice(makePv(vgText([linear('root', 0, 8), linear('home', 8, 8)])));

describe('examineDisk', () => {
  it('plans the PV by its free extents and its logical volumes by what they hold', async () => {
    const { plans } = await examineDisk(makeContext(), disk(), input);
    expect(plans.map((p) => [p.volume.name, p.action, p.reason])).toEqual([
      ['/dev/sda', 'map', 'LVM: extents no logical volume uses'],
      ['/dev/VG/root', 'keep', 'no filesystem recognised'],
      ['/dev/VG/home', 'keep', 'no filesystem recognised'],
    ]);
  });

  it('--ignore VG leaves the whole group alone: its logical volumes and its free extents', async () => {
    const { plans, needs } = await examineDisk(makeContext(), disk(), { ...input, ignore: ['VG'] });
    expect(plans.map((p) => [p.volume.name, p.action, p.reason, p.warn])).toEqual([
      ['/dev/sda', 'keep', 'ignored (--ignore)', false],
      ['/dev/VG/root', 'keep', 'ignored (--ignore)', false],
      ['/dev/VG/home', 'keep', 'ignored (--ignore)', false],
    ]);
    expect(needs).toEqual({ engines: [], tools: [], overlay: false, overlayVolumes: 0 });
  });

  it('--zero names a logical volume; --engine mount still uses the free extents', async () => {
    const { plans } = await examineDisk(makeContext(), disk(), { ...input, zero: ['/dev/VG/home'], engine: 'mount', root: true });
    expect(plans.map((p) => [p.action, p.engine])).toEqual([['map', 'map'], ['keep', undefined], ['zero', 'map']]);
  });

  it('warns about --ignore/--zero names that match nothing, but not about the VG', async () => {
    const warnings: string[] = [];
    const ctx = makeContext({ debug() {}, info() {}, trace() {}, warn: (m) => void warnings.push(m) });
    await examineDisk(ctx, disk(), { ...input, ignore: ['VG', '/dev/sdz9'] });
    expect(warnings).toEqual([expect.stringMatching(/^\/dev\/sdz9: no such filesystem or volume group/)]);
  });
});

describe('the preflight after planning', () => {
  const fake: Engine = {
    id: 'fake',
    tools: ['sparsify-test-no-such-tool'],
    needsOverlay: false,
    needsFuseFile: false,
    verbs: ['Faking', 'Faking'],
    does: 'fake',
    accepts: ({ fs }) => (fs.type === 'unknown' ? { usable: true, reason: 'faked' } : { usable: false, reason: 'no', blame: 'volume' }),
    open: () => Promise.reject(new Error('not opened in this test')),
  };

  it('asks for the programs of the engines chosen, and only those', async () => {
    await expect(examineDisk(makeContext(), disk(), input, [mapEngine, fake])).rejects.toMatchObject({
      code: 'TOOL_MISSING',
      message: 'sparsify-test-no-such-tool not installed',
    });
    // The same engine in the table, but no volume for it: nothing is asked.
    const { needs } = await examineDisk(makeContext(), disk(), { ...input, ignore: ['VG'] }, [mapEngine, fake]);
    expect(needs.tools).toEqual([]);
  });
});
