type HeaderValue = string | string[] | undefined;
type Headers = Record<string, HeaderValue>;

const first = (value: HeaderValue): string | undefined => (Array.isArray(value) ? value[0] : value);

/**
 * How long a server asked us to wait, from `retry-after-ms` or `Retry-After` (seconds or an HTTP date).
 * Returns undefined for a missing or unusable value; the caller falls back to its own backoff.
 * Values are clamped to `maxMs` so a hostile or buggy header cannot park the queue for a day.
 */
export function parseRetryAfterMs(headers: Headers, now: number = Date.now(), maxMs = 15 * 60_000): number | undefined {
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined && ms.trim() !== '') {
    const value = Number(ms);
    if (Number.isFinite(value) && value >= 0) return Math.min(value, maxMs);
  }
  const raw = first(headers['retry-after'])?.trim();
  if (!raw) return undefined;
  if (/^\d+(\.\d+)?$/.test(raw)) return Math.min(Number(raw) * 1000, maxMs);
  // An HTTP date names its month; without this, Date.parse reads "-5" as the year -5.
  const date = /[A-Za-z]{3}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (Number.isNaN(date)) return undefined;
  return Math.min(Math.max(0, date - now), maxMs);
}
