/* Parsing and checking single cell values. Each check returns an issue message, or the parsed value. */

export const CELL_MAX = 40_000;

/** `40000` -> `40,000` (messages only; fixed locale so they do not depend on the machine). */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** A value quoted for a message, shortened so a message never carries a whole cell. */
export function quoteValue(value: string, max = 40): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max - 1)}…` : value);
}

/**
 * Formula injection (cells that Excel, LibreOffice or Google Sheets would execute when a report with this value is
 * opened): a value starting with `=` or `@`; `+`/`-` followed by a letter, `(`, `=`, `@` or `+`; a leading tab or
 * carriage return. A sign followed by a digit is allowed (phone numbers "+49 30 1234", negative numbers, pitches
 * "+2st") unless more operators follow: "-2+3" is flagged, since a spreadsheet evaluates it and the same shape
 * carries DDE payloads ("-2+cmd|' /C calc'!A0").
 */
export function formulaMessage(raw: string): string | undefined {
  const first = raw[0];
  if (first === '\t') return 'cell starts with a tab and would run as a spreadsheet formula';
  if (first === '\r') return 'cell starts with a carriage return and would run as a spreadsheet formula';
  const value = raw.trimStart();
  const head = value[0];
  if (head === '=' || head === '@') return `cell starts with "${head}" and would run as a spreadsheet formula`;
  if (head === '+' || head === '-') {
    const next = value[1] ?? '';
    const risky = /^[\p{L}(=@+]$/u.test(next) || (/^[0-9.]$/.test(next) && /[+*^&=|!@]/.test(value.slice(1)));
    if (risky) return `cell starts with "${head}" and would run as a spreadsheet formula`;
  }
  return undefined;
}

/** C0 controls and DEL, except tab, line feed and carriage return (multi-line scripts). */
const CONTROL_CHARACTER = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/** A NUL or other control character has no place in a script, a URL or a name; it would be sent as it is. */
export function controlCharacterMessage(raw: string): string | undefined {
  const match = CONTROL_CHARACTER.exec(raw);
  if (match === null) return undefined;
  const code = match[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
  return `cell holds the control character U+${code}${code === '0000' ? ' (NUL)' : ''} at position ${match.index + 1}; remove it`;
}

const TRUE_WORDS = new Set(['true', 'yes', '1']);
const FALSE_WORDS = new Set(['false', 'no', '0']);

/** true/false/yes/no/1/0, any case. */
export function parseBoolean(value: string): boolean | { message: string } {
  const word = value.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  return { message: `must be true or false (or yes/no, 1/0), got ${quoteValue(value)}` };
}

/** A decimal number within [min, max]; a decimal comma ("0,5", common in `;` files) is accepted. */
export function parseNumberInRange(value: string, min: number, max: number): number | { message: string } {
  const text = value.trim();
  const range = max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`;
  const fail = { message: `must be a number ${range} (got ${quoteValue(value)})` };
  if (!/^[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+)$/.test(text)) return fail;
  const n = Number(text.replace(',', '.'));
  if (!Number.isFinite(n) || n < min || n > max) return fail;
  return n;
}
