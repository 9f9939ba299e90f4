import { describe, expect, it } from 'vitest';
import { Slots } from '../../src/shared/slots.js';

describe('Slots', () => {
  it('gives out at most its capacity and takes slots back', () => {
    const slots = new Slots(2);
    const first = slots.tryTake();
    const second = slots.tryTake();
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    expect(slots.tryTake()).toBeUndefined();
    first?.release();
    first?.release();
    expect(slots.inUse).toBe(1);
    expect(slots.tryTake()).toBeDefined();
    expect(slots.tryTake()).toBeUndefined();
  });

  it('keeps a slot until every holder has let go, whatever the order', () => {
    const slots = new Slots(1);
    const lease = slots.tryTake();
    const letGo = lease?.hold();
    lease?.release();
    expect(slots.inUse).toBe(1);
    expect(slots.tryTake()).toBeUndefined();
    letGo?.();
    letGo?.();
    expect(slots.inUse).toBe(0);
    // A hold after the slot is gone holds nothing.
    lease?.hold()();
    expect(slots.inUse).toBe(0);

    const other = slots.tryTake();
    const worker = other?.hold();
    worker?.();
    expect(slots.inUse).toBe(1);
    other?.release();
    expect(slots.inUse).toBe(0);
  });

  it('refuses a capacity below one', () => {
    expect(() => new Slots(0)).toThrow(RangeError);
  });
});
