/**
 * The templating operations as data: what each one removes, empties or edits in a guest, and on
 * which guests. Named and defaulted as virt-sysprep names them (its --list-operations), so a
 * virt-sysprep user's `--operations` list means the same here. The paths are facts about guest
 * operating systems, taken from virt-sysprep's documentation and source; the words are ours.
 */

/** A test over the inspected guest; every field given must match (a missing field matches all). */
export interface Condition {
  /** libguestfs' OS types (linux, windows, freebsd, …). */
  readonly osTypes?: readonly string[];
  /** libguestfs' distro names (debian, fedora, rhel, …). */
  readonly distros?: readonly string[];
  /** rpm, deb, pacman, … */
  readonly packageFormats?: readonly string[];
  /** apt, dnf, yum, zypper, … */
  readonly packageManagers?: readonly string[];
}

/**
 * One step of an operation. Globs are glob(3) patterns on absolute guest paths (`*` never
 * crosses a `/`, and never matches a leading dot); an entry whose pattern matches nothing is
 * not an error.
 */
export type Action =
  /** Every match is removed; a directory with what it holds. */
  | { readonly kind: 'remove'; readonly glob: string; readonly when?: Condition }
  /**
   * Every match that is a regular file is removed; a directory, device or symlink of that name is
   * left alone (a history linked to /dev/null is someone's choice).
   */
  | { readonly kind: 'remove-file'; readonly glob: string; readonly when?: Condition }
  /** Everything in the directory is removed, dot-files included; the directory stays. */
  | { readonly kind: 'empty-dir'; readonly dir: string; readonly when?: Condition }
  /**
   * Every regular file anywhere below each matching directory is removed; directories stay
   * (a package manager expects its cache layout), and so do files named in `keep`.
   */
  | { readonly kind: 'remove-files-below'; readonly dir: string; readonly keep?: readonly string[]; readonly when?: Condition }
  /** Regular files whose name matches one of `names` (basename globs) below `roots` are removed. */
  | { readonly kind: 'remove-by-name'; readonly roots: readonly string[]; readonly names: readonly string[]; readonly when?: Condition }
  /** A regular file is emptied (kept, with its owner, mode and label: its absence can mean something else). */
  | { readonly kind: 'empty-file'; readonly path: string; readonly when?: Condition }
  /** A regular file gets this content, written in place (owner, mode and label kept). */
  | { readonly kind: 'reset-file'; readonly path: string; readonly content: string; readonly when?: Condition }
  /** Lines starting with one of `prefixes` are dropped from every matching regular file. */
  | { readonly kind: 'drop-lines'; readonly glob: string; readonly prefixes: readonly string[]; readonly when?: Condition }
  /**
   * When the guest runs sshd and nothing in it makes missing host keys at boot, a first-boot
   * unit that does is added and enabled (src/template/firstboot); without systemd, a warning.
   */
  | { readonly kind: 'host-keys-at-boot'; readonly when?: Condition };

/** One operation of the table. */
export interface Operation {
  /** virt-sysprep's name. */
  readonly name: string;
  /** Run when no --operations is given (virt-sysprep's `*`). */
  readonly defaultOn: boolean;
  /** One line for --list-operations. */
  readonly description: string;
  /** The guests it applies to; on any other guest it does nothing. */
  readonly appliesTo: Condition & { readonly osTypes: readonly string[] };
  readonly actions: readonly Action[];
}

/** What one action did (or, in a dry run, would do) to one guest path. */
export interface Change {
  readonly path: string;
  readonly change: 'removed' | 'emptied' | 'reset' | 'edited' | 'added';
  /** Disk space it held (du), for removed paths: what the free-space pass can reclaim. */
  readonly bytes?: number;
  /** For an edit: the lines dropped; for an added file: what it is and why. */
  readonly detail?: string;
}

/** What one operation did on one guest. */
export interface OperationResult {
  readonly name: string;
  /** Why it did nothing: not for this guest. */
  readonly skipped?: string;
  readonly changes: readonly Change[];
  /** Paths left alone, with the reason (a symlink in a parent, a name that is not UTF-8, …). */
  readonly warnings: readonly string[];
}
