/**
 * The engines' ids, in the order of preference under `--engine auto`. Apart from the table
 * (registry.ts), which checks that it holds exactly these, in this order: the command line
 * needs the names before any engine is loaded, and loading the table loads every engine.
 */
export const ENGINE_IDS = ['map', 'appliance', 'mount'] as const;

/** An engine's id: a value of `--engine` and an action in the report. */
export type EngineId = (typeof ENGINE_IDS)[number];

/** The values `--engine` takes. */
export const ENGINE_CHOICES = ['auto', ...ENGINE_IDS] as const;
