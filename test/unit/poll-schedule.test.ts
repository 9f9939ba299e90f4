import { describe, expect, it } from 'vitest';
import { dueStepMs, nextPollDelay, RenderTimes } from '../../src/worker/poll-schedule.js';

const MAX = 5_000;

describe('poll schedule', () => {
  it('looks every 2.5 % of the typical render while a talk is due', () => {
    expect(dueStepMs({ low: 1_600, median: 2_000, high: 2_400 }, MAX)).toBe(50);
    expect(dueStepMs({ low: 16_000, median: 20_000, high: 24_000 }, MAX)).toBe(500);
  });

  it('spreads its looks wider when render times vary widely: about 20 looks from the quick renders to the slow ones', () => {
    const window = { low: 10_000, median: 30_000, high: 60_000 };
    const step = dueStepMs(window, MAX);
    expect(step).toBe(2_500);
    let elapsed = window.low;
    let looks = 0;
    while (elapsed <= window.high) {
      elapsed += nextPollDelay({ elapsedMs: elapsed, polls: looks, window, initialMs: 1_000, maxMs: MAX });
      looks += 1;
    }
    expect(looks).toBeLessThanOrEqual(21);
  });

  it('never looks closer together than 50 ms, nor further apart than the ceiling', () => {
    expect(dueStepMs({ low: 300, median: 400, high: 500 }, MAX)).toBe(50);
    expect(dueStepMs({ low: 100_000, median: 400_000, high: 900_000 }, MAX)).toBe(MAX);
  });

  it('waits for the quickest recent render before the first look, and backs off once slower than nearly all', () => {
    const window = { low: 1_600, median: 2_000, high: 2_400 };
    expect(nextPollDelay({ elapsedMs: 10, polls: 0, window, initialMs: 1_000, maxMs: MAX })).toBe(1_590);
    expect(nextPollDelay({ elapsedMs: 3_400, polls: 9, window, initialMs: 1_000, maxMs: MAX })).toBe(500);
  });

  it('knows no window until four renders are timed', () => {
    const times = new RenderTimes();
    for (const ms of [1_900, 2_000, 2_100]) times.record(ms);
    expect(times.window()).toBeUndefined();
    times.record(2_200);
    expect(times.window()).toEqual({ low: 1_900, median: 2_100, high: 2_200 });
  });
});
