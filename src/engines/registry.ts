/**
 * The engine table. An engine is added by its own folder and one line here; the planner, the
 * volume pass, the preflight, the overlay decision and `--engine` all read this list. The order
 * is the order of preference under `--engine auto`: the map engine first (no root, no writes),
 * then the appliance (guest filesystems mounted inside a VM, no root), then the mount engine
 * (root, the host's kernel: only where no appliance can run).
 */
import { applianceEngine } from './appliance/engine.js';
import type { Engine } from './engine.js';
import { ENGINE_IDS, type EngineId } from './ids.js';
import { mapEngine } from './map/engine.js';
import { mountEngine } from './mount/engine.js';

/** A table holding one engine per id of `Ids`, in that order. */
type TableOf<Ids extends readonly EngineId[]> = { readonly [K in keyof Ids]: Ids[K] extends EngineId ? Engine<Ids[K]> : never };

/** One engine per id of ENGINE_IDS, in that order: `satisfies` refuses any other table. */
export const ENGINES = [mapEngine, applianceEngine, mountEngine] as const satisfies TableOf<typeof ENGINE_IDS>;

export { ENGINE_CHOICES, type EngineId } from './ids.js';

/** The engine that runs byte-level actions (free maps, --zero, swap). */
export const ZEROING_ENGINE = 'map' satisfies EngineId;

/** The engine that mounts guest filesystems inside a libguestfs VM: it needs a host fact the planner asks for. */
export const APPLIANCE_ENGINE = 'appliance' satisfies EngineId;

/** The engine that mounts guest filesystems in the host's own kernel (a notice says so under auto). */
export const HOST_KERNEL_ENGINE = 'mount' satisfies EngineId;

/** The entry of `id` in `engines`. */
export function engineById(id: string, engines: readonly Engine[] = ENGINES): Engine {
  const engine = engines.find((e) => e.id === id);
  if (!engine) throw new Error(`no engine ${id} in the engine table`);
  return engine;
}
