/**
 * The one shape for "usable, or the reason why not" (a free map that can be trusted, a GPT copy
 * that can be read, a filesystem that can be mounted). A missing capability is a value, not an
 * exception: the planner takes the documented fallback and the report prints the reason.
 */

/** Usable (with what was found, `T`), or not, with a one-line reason a report can print. */
export type Verdict<T extends object = object> = ({ readonly ok: true } & T) | Refused;

/** The "not usable" half of every Verdict. */
export interface Refused {
  readonly ok: false;
  /** Why, in a phrase that reads after the thing's name ("its free map reaches outside the volume"). */
  readonly reason: string;
}

/** A Refused verdict with `reason`. */
export function refused(reason: string): Refused {
  return { ok: false, reason };
}
