import { createHash } from 'node:crypto';
import { canonicalColumn } from './columns.js';

/**
 * A row's stable identity: its `id` cell when present, else `r` + the first 16 hex chars of sha256 over the row's
 * non-empty cells (canonical names, sorted, values trimmed, JSON-encoded). Column order, surrounding whitespace,
 * header spelling ("First Name" vs first_name) and empty columns do not change it; the `r` keeps it from ever being
 * all digits.
 */
export function computeRowKey(input: Record<string, string>): string {
  const entries: [string, string][] = [];
  for (const [key, value] of Object.entries(input)) {
    const name = canonicalColumn(key);
    const trimmed = value.trim();
    if (name === '' || trimmed === '') continue;
    if (name === 'id') return trimmed;
    entries.push([name, trimmed]);
  }
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `r${createHash('sha256').update(JSON.stringify(entries)).digest('hex').slice(0, 16)}`;
}
