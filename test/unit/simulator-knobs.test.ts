import { describe, expect, it } from 'vitest';
import { DEFAULT_KNOBS, InvalidKnobsError, knobsToJson, mergeKnobs } from '../../src/simulator/knobs.js';

describe('mergeKnobs', () => {
  it('applies a partial update and keeps the rest', () => {
    const knobs = mergeKnobs({ ...DEFAULT_KNOBS }, { renderMs: 10, errorRate: 0.5 });
    expect(knobs).toEqual({ ...DEFAULT_KNOBS, renderMs: 10, errorRate: 0.5 });
  });

  it('reads Infinity from JSON as null or "Infinity", but null retryAfterSeconds stays null', () => {
    const knobs = mergeKnobs({ ...DEFAULT_KNOBS, credits: 3, maxConcurrentRenders: 2 }, { credits: 'Infinity', maxConcurrentRenders: null, retryAfterSeconds: null });
    expect(knobs).toMatchObject({ credits: Infinity, maxConcurrentRenders: Infinity, retryAfterSeconds: null });
  });

  it.each([{ errorRate: 1.5 }, { credits: -1 }, { credits: 1.5 }, { renderMs: 'fast' }, { unknownKnob: 1 }, { errorRate: 0.6, rejectRate: 0.6 }, 'nope'])(
    'refuses %j',
    (patch) => {
      expect(() => mergeKnobs({ ...DEFAULT_KNOBS }, patch)).toThrow(InvalidKnobsError);
    },
  );

  it('ignores keys given as undefined', () => {
    expect(mergeKnobs({ ...DEFAULT_KNOBS }, { renderMs: undefined })).toEqual(DEFAULT_KNOBS);
  });
});

describe('knobsToJson', () => {
  it('spells Infinity as "Infinity" so it survives JSON and reads back', () => {
    const json = JSON.parse(JSON.stringify(knobsToJson(DEFAULT_KNOBS))) as unknown;
    expect(json).toMatchObject({ credits: 'Infinity', retryAfterSeconds: 1 });
    expect(mergeKnobs({ ...DEFAULT_KNOBS, credits: 1 }, json)).toEqual(DEFAULT_KNOBS);
  });
});
