/**
 * The appliance launched ahead of the pass. Under TCG a launch takes 15 s or more, and the pass
 * used to start it at the first volume planned for it, after the whole disk was examined and the
 * overlay made. A mode that learns while examining that the appliance will be needed (the
 * planner says so: plan-volumes.ts engineBeforeMap) starts it here at once, over the disk's
 * writable export, and hands the pending appliance to the pass (EngineTarget.appliance): the
 * rest of the examination, the overlay's check and the map engine's volumes run meanwhile.
 *
 * Its owner is the mode, not the engine: disposing it stops a launch still under way (its own
 * signal, joined with the run's, ends the launch at once) or the running appliance.
 */
import type { RunContext } from '../../context.js';
import type { EngineTarget } from '../engine.js';
import type { Appliance } from './guestfish.js';
import { launchOver } from './session.js';

/** An appliance whose launch has started. */
export interface PendingAppliance extends AsyncDisposable {
  /** Resolves with the launched appliance; rejects as the launch does (CANCELLED once disposed). */
  readonly appliance: Promise<Appliance>;
}

/**
 * Starts launching now; `time` wraps the launch (the run's phase clock, under LAUNCH_PHASE).
 * The returned promise is handled here, so a launch that fails before anyone waits on it is
 * no unhandled rejection: the pass that waits gets the same error.
 */
export function startAppliance(
  ctx: RunContext,
  target: EngineTarget,
  time: <T>(fn: () => Promise<T>) => Promise<T> = (fn) => fn(),
): PendingAppliance {
  const stop = new AbortController();
  const launchCtx: RunContext = { ...ctx, signal: AbortSignal.any([ctx.signal, stop.signal]) };
  const appliance = time(() => launchOver(launchCtx, target));
  appliance.catch(() => undefined);
  let disposed: Promise<void> | undefined;
  return {
    appliance,
    [Symbol.asyncDispose]: () =>
      (disposed ??= (async () => {
        stop.abort();
        const running = await appliance.catch(() => undefined);
        await running?.[Symbol.asyncDispose]();
      })()),
  };
}
