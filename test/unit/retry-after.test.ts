import { describe, expect, it } from 'vitest';
import { parseRetryAfterMs } from '../../src/did/index.js';

const now = Date.parse('2026-11-25T10:00:00Z');

describe('parseRetryAfterMs', () => {
  it('reads seconds', () => expect(parseRetryAfterMs({ 'retry-after': '3' }, now)).toBe(3000));
  it('reads fractional seconds', () => expect(parseRetryAfterMs({ 'retry-after': '1.5' }, now)).toBe(1500));
  it('reads an HTTP date', () => expect(parseRetryAfterMs({ 'retry-after': 'Wed, 25 Nov 2026 10:00:30 GMT' }, now)).toBe(30_000));
  it('treats a date in the past as no wait', () => expect(parseRetryAfterMs({ 'retry-after': 'Wed, 25 Nov 2026 09:00:00 GMT' }, now)).toBe(0));
  it('prefers retry-after-ms', () => expect(parseRetryAfterMs({ 'retry-after-ms': '250', 'retry-after': '9' }, now)).toBe(250));
  it('falls back from a bad retry-after-ms', () => expect(parseRetryAfterMs({ 'retry-after-ms': 'soon', 'retry-after': '2' }, now)).toBe(2000));
  it('ignores garbage', () => expect(parseRetryAfterMs({ 'retry-after': 'later please' }, now)).toBeUndefined());
  it('ignores negative numbers', () => expect(parseRetryAfterMs({ 'retry-after': '-5' }, now)).toBeUndefined());
  it('returns undefined when absent', () => expect(parseRetryAfterMs({}, now)).toBeUndefined());
  it('clamps absurd waits', () => expect(parseRetryAfterMs({ 'retry-after': '86400' }, now, 60_000)).toBe(60_000));
  it('takes the first of repeated headers', () => expect(parseRetryAfterMs({ 'retry-after': ['4', '8'] }, now)).toBe(4000));
});
