/**
 * The engine table. An engine is added by its own folder and one line here; the planner, the
 * volume pass, the preflight, the overlay decision and `--engine` all read this list. The order
 * is the order of preference under `--engine auto` (the map engine first: no root, no writes).
 */
import type { Engine } from './engine.js';
import { mapEngine } from './map/engine.js';
import { mountEngine } from './mount/engine.js';

export const ENGINES = [mapEngine, mountEngine] as const;

/** An engine's id: a value of `--engine` and an action in the report. */
export type EngineId = (typeof ENGINES)[number]['id'];

/** The values `--engine` takes. */
export const ENGINE_CHOICES = ['auto', ...ENGINES.map((e) => e.id)] as const;

/** The engine that runs byte-level actions (free maps, --zero, swap). */
export const ZEROING_ENGINE = 'map' satisfies EngineId;

/** The entry of `id` in `engines`. */
export function engineById(id: string, engines: readonly Engine[] = ENGINES): Engine {
  const engine = engines.find((e) => e.id === id);
  if (!engine) throw new Error(`no engine ${id} in the engine table`);
  return engine;
}
