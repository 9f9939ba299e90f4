import { describe, expect, it } from 'vitest';
import { chooseSample, sampleCandidateOf, sampleOf, voiceOf, type SampleCandidate } from '../../src/app/sample.js';
import { IMAGE } from '../helpers/harness.js';

const rows = (count: number, shape: (index: number) => Partial<SampleCandidate> = () => ({})): SampleCandidate[] =>
  Array.from({ length: count }, (_, index) => ({ rowKey: `r${index}`, scriptLength: 40, voice: 'default', ...shape(index) }));

describe('chooseSample', () => {
  it('takes the first row, the longest script, one row per new voice, then random rows, in that order', () => {
    const sheet = rows(50, (index) => ({
      scriptLength: index === 17 ? 900 : 40,
      voice: index === 5 || index === 6 ? 'microsoft:en-US-JennyNeural' : index === 30 ? 'elevenlabs:21m00' : 'default',
    }));
    const picks = chooseSample(sheet, 6, 'batch-a');
    expect(picks.slice(0, 4)).toEqual([
      { rowKey: 'r0', reason: 'first' },
      { rowKey: 'r17', reason: 'longest script' },
      // The first row of each voice no earlier pick speaks in, in order of appearance.
      { rowKey: 'r5', reason: 'voice microsoft:en-US-JennyNeural' },
      { rowKey: 'r30', reason: 'voice elevenlabs:21m00' },
    ]);
    expect(picks.slice(4).map((pick) => pick.reason)).toEqual(['random', 'random']);
    expect(new Set(picks.map((pick) => pick.rowKey)).size).toBe(6);
  });

  it('draws the same random rows for the same batch id, whatever the order of other work, and others for another id', () => {
    const sheet = rows(500);
    const first = chooseSample(sheet, 10, 'batch-a');
    expect(chooseSample(sheet, 10, 'batch-a')).toEqual(first);
    const other = chooseSample(sheet, 10, 'batch-b');
    expect(other[0]).toEqual({ rowKey: 'r0', reason: 'first' });
    expect(other.map((pick) => pick.rowKey)).not.toEqual(first.map((pick) => pick.rowKey));
    // Random picks spread over the sheet, not just its top.
    expect(Math.max(...first.map((pick) => Number(pick.rowKey.slice(1))))).toBeGreaterThan(50);
  });

  it('stops at the size even when the sheet has more voices, and never picks a row twice', () => {
    const sheet = rows(20, (index) => ({ voice: `v${index}`, scriptLength: index === 0 ? 100 : 10 }));
    // The first row is also the longest: it is picked once, as "first".
    expect(chooseSample(sheet, 3, 'b')).toEqual([
      { rowKey: 'r0', reason: 'first' },
      { rowKey: 'r1', reason: 'voice v1' },
      { rowKey: 'r2', reason: 'voice v2' },
    ]);
  });

  it('takes every row of a sheet no bigger than the sample', () => {
    const picks = chooseSample(rows(3), 5, 'b');
    expect(picks.map((pick) => pick.rowKey).sort()).toEqual(['r0', 'r1', 'r2']);
    expect(chooseSample([], 5, 'b')).toEqual([]);
  });

  it('refuses a size that is not a whole number of at least 1', () => {
    expect(() => chooseSample(rows(3), 0, 'b')).toThrow(RangeError);
    expect(() => sampleOf(2.5)).toThrow(/whole number/);
  });
});

describe('voiceOf', () => {
  it('names the provider and voice, the default voice, or a recorded script', () => {
    const text = (provider?: object) => ({ source_url: IMAGE, script: { type: 'text' as const, input: 'Hello there', ...(provider ? { provider } : {}) } });
    expect(voiceOf(text() as never)).toBe('default');
    expect(voiceOf(text({ type: 'microsoft', voice_id: 'en-US-JennyNeural' }) as never)).toBe('microsoft:en-US-JennyNeural');
    expect(voiceOf(text({ type: 'google' }) as never)).toBe('google');
    expect(voiceOf({ source_url: IMAGE, script: { type: 'audio', audio_url: 'https://example.com/a.mp3' } } as never)).toBe('audio');
    expect(sampleCandidateOf({ rowKey: 'k', talk: text() as never })).toEqual({ rowKey: 'k', scriptLength: 11, voice: 'default' });
  });
});
