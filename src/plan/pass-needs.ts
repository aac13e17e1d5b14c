import type { Engine } from '../engines/engine.js';
import { ENGINES } from '../engines/registry.js';
import type { VolumePlan } from './types.js';

/** What the chosen engines need from the run before the pass: programs and an overlay. */
export interface PassNeeds {
  /** The engines some volume is planned for, in table order. */
  readonly engines: readonly string[];
  /** Programs the preflight checks (beyond what every run needs). */
  readonly tools: readonly string[];
  /** Copy mode: some engine writes the disk, so a writable overlay over the input is needed. */
  readonly overlay: boolean;
  /** How many volumes the overlay-writing engines take (the overlay's size estimate). */
  readonly overlayVolumes: number;
}

/** Derived from the plans alone, so the preflight asks only for what the chosen engines use. */
export function passNeeds(plans: readonly VolumePlan[], engines: readonly Engine[] = ENGINES): PassNeeds {
  const chosen = engines.filter((e) => plans.some((p) => p.engine === e.id));
  const overlayVolumes = plans.filter((p) => chosen.some((e) => e.needsOverlay && e.id === p.engine)).length;
  return {
    engines: chosen.map((e) => e.id),
    tools: [...new Set(chosen.flatMap((e) => e.tools))],
    overlay: overlayVolumes > 0,
    overlayVolumes,
  };
}
