/**
 * glob(3) patterns as regular expressions, to check what the appliance's glob-expand and find0
 * answered. Those answers are untrusted: glob-expand prints one path a line, so a guest file
 * named "x.log\n/etc/shadow" would come back as two paths; only a path the pattern itself
 * could have produced is acted on. Supports `*`, `?` and literal text (all the table uses).
 */

/** The regular expression of one pattern: `*`/`?` never cross `/`; at a component's start they never match a leading dot unless `leadingDot`. */
export function globToRegExp(glob: string, options: { leadingDot?: boolean } = {}): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    const atStart = i === 0 || glob[i - 1] === '/';
    const noDot = atStart && !options.leadingDot ? '(?!\\.)' : '';
    if (ch === '*') out += `${noDot}[^/]*`;
    else if (ch === '?') out += `${noDot}[^/]`;
    else if (ch === '[') throw new Error(`glob brackets are not supported: ${glob}`);
    else out += ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${out}$`, 's');
}

/** True when `path` is one the pattern matches. */
export function globMatches(glob: string, path: string, options: { leadingDot?: boolean } = {}): boolean {
  return globToRegExp(glob, options).test(path);
}

/** The directory part of an absolute path ('/' for a top-level name). */
export function parentOf(path: string): string {
  const at = path.lastIndexOf('/');
  return at <= 0 ? '/' : path.slice(0, at);
}

/** The last component of a path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** `dir` and `name` joined with one slash. */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}

/**
 * An absolute path without `.` or `..` components or empty ones: the only kind acted on. rm-rf
 * runs on the appliance's /sysroot plus the path as given, so a `..` would climb out of the guest.
 */
export function isNormalPath(path: string): boolean {
  return path.startsWith('/') && (path === '/' || path.slice(1).split('/').every((c) => c !== '' && c !== '.' && c !== '..'));
}
