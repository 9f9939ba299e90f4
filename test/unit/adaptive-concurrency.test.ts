import { describe, expect, it } from 'vitest';
import { AdaptiveConcurrency } from '../../src/worker/adaptive-concurrency.js';

function fakeQueue(initial: number | null) {
  let value = initial;
  return {
    get value() {
      return value;
    },
    set: async (n: number) => {
      value = n;
      return n;
    },
    get: async () => value,
  };
}

describe('AdaptiveConcurrency', () => {
  it('starts at the ceiling on a fresh queue, and keeps what other workers learned', async () => {
    const fresh = fakeQueue(null);
    await new AdaptiveConcurrency(fresh, 20).start();
    expect(fresh.value).toBe(20);

    const learned = fakeQueue(3);
    const joining = new AdaptiveConcurrency(learned, 20);
    await joining.start();
    expect(learned.value).toBe(3);
    expect(joining.current).toBe(3);

    const tooHigh = fakeQueue(50);
    await new AdaptiveConcurrency(tooHigh, 20).start();
    expect(tooHigh.value).toBe(20);
  });

  it('cuts to the number of renders in flight on a 429, once per burst', async () => {
    let now = 0;
    const queue = fakeQueue(null);
    const limiter = new AdaptiveConcurrency(queue, 32, { now: () => now });
    await limiter.start();
    await limiter.onRateLimited(8);
    expect(queue.value).toBe(8);
    // More 429s from the same burst change nothing.
    now += 100;
    await limiter.onRateLimited(5);
    expect(queue.value).toBe(8);
    // Later, without a render count, it shrinks by a quarter.
    now += 5_000;
    await limiter.onRateLimited();
    expect(queue.value).toBe(6);
  });

  it('probes upward only after a run of clean creates and a quiet spell, never past the ceiling', async () => {
    let now = 0;
    const queue = fakeQueue(null);
    const limiter = new AdaptiveConcurrency(queue, 5, { now: () => now });
    await limiter.start();
    await limiter.onRateLimited(3);
    expect(queue.value).toBe(3);
    for (let i = 0; i < 10; i += 1) await limiter.onCreated();
    expect(queue.value).toBe(3);
    now += 10_001;
    for (let i = 0; i < 10; i += 1) await limiter.onCreated();
    expect(queue.value).toBe(4);
    for (let round = 0; round < 5; round += 1) for (let i = 0; i < 15; i += 1) await limiter.onCreated();
    expect(queue.value).toBe(5);
  });
});
