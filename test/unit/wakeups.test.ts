import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Wakeups } from '../../src/worker/wakeups.js';

/** What Node keeps on a signal for each AbortSignal.any() built from it (never dropped on Node 20). */
function dependantsOf(signal: AbortSignal): number {
  const symbol = Object.getOwnPropertySymbols(signal).find((candidate) => candidate.description === 'kDependantSignals');
  const set = symbol ? (signal as unknown as Record<symbol, Set<unknown> | undefined>)[symbol] : undefined;
  return set?.size ?? 0;
}

describe('Wakeups.wait', () => {
  it('watches a long-lived signal through many waits and leaves nothing on it', async () => {
    const wakeups = new Wakeups('test');
    const handback = new AbortController();
    for (let index = 0; index < 200; index += 1) {
      const perJob = new AbortController();
      const waiting = wakeups.wait(`job${index}`, 60_000, [handback.signal, perJob.signal]);
      expect(wakeups.wake(`job${index}`)).toBe(true);
      await expect(waiting).resolves.toBe(true);
    }
    await expect(wakeups.wait('timed', 1, [handback.signal])).resolves.toBe(false);
    // Per-row state on the worker's lifelong signal is what made `run` grow with every row.
    expect(getEventListeners(handback.signal, 'abort')).toHaveLength(0);
    expect(dependantsOf(handback.signal)).toBe(0);
  });

  it('rejects with the reason of whichever signal aborts, and with one already aborted', async () => {
    const wakeups = new Wakeups('test');
    const handback = new AbortController();
    const perJob = new AbortController();
    const waiting = wakeups.wait('a', 60_000, [handback.signal, perJob.signal]);
    perJob.abort(new Error('job lock lost'));
    await expect(waiting).rejects.toThrow('job lock lost');
    expect(getEventListeners(handback.signal, 'abort')).toHaveLength(0);
    handback.abort(new Error('shutting down'));
    await expect(wakeups.wait('b', 60_000, [handback.signal, undefined])).rejects.toThrow('shutting down');
    await expect(wakeups.wait('c', 60_000, handback.signal)).rejects.toThrow('shutting down');
  });
});

describe('Wakeups.wakeAllHere', () => {
  it('wakes every row of this process waiting now, and only those', async () => {
    const wakeups = new Wakeups('test');
    const waits = ['a', 'b', 'c'].map((jobId) => wakeups.wait(jobId, 60_000));
    expect(wakeups.wakeAllHere()).toBe(3);
    await expect(Promise.all(waits)).resolves.toEqual([true, true, true]);
    expect(wakeups.wakeAllHere()).toBe(0);
    // Nothing is remembered for a later wait: a row that waits afterwards sleeps its full time.
    await expect(wakeups.wait('a', 1)).resolves.toBe(false);
  });
});
