/** Formats bytes for people: 1.5 GiB, 300 MiB, 4.0 KiB, 12 B. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const sign = bytes < 0 ? '-' : '';
  return unit === 0 ? `${sign}${value} B` : `${sign}${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** `n` rounded up to a whole number of `to` (both positive integers). */
export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
