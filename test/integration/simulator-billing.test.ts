import { afterEach, describe, expect, it, vi } from 'vitest';
import { DidClient, type Talk } from '../../src/did/index.js';
import { startSimulator, type Simulator, type SimulatorKnobs } from '../../src/simulator/server.js';

const IMAGE = 'https://example.com/images/alice.jpg';
/** 16 words in two sentences: about 7 s of speech, one credit. */
const SHORT = 'Hello Ana, thanks for joining us this spring. Here is what is new for your team today.';

let simulator: Simulator | undefined;
let client: DidClient | undefined;

afterEach(async () => {
  await client?.close();
  await simulator?.close();
  client = undefined;
  simulator = undefined;
});

async function start(knobs: Partial<SimulatorKnobs>): Promise<{ sim: Simulator; did: DidClient }> {
  simulator = await startSimulator({ knobs: { renderMs: 100, ...knobs } });
  client = new DidClient({ apiKey: simulator.apiKey, baseUrl: simulator.url });
  return { sim: simulator, did: client };
}

const body = (input: string, padAudio?: number) => ({ source_url: IMAGE, script: { type: 'text' as const, input }, ...(padAudio === undefined ? {} : { config: { pad_audio: padAudio } }) });

async function finished(did: DidClient, id: string): Promise<Talk> {
  let talk: Talk | undefined;
  await vi.waitFor(
    async () => {
      talk = await did.getTalk(id);
      expect(['done', 'error', 'rejected']).toContain(talk.status);
    },
    { timeout: 5_000, interval: 25 },
  );
  return talk as Talk;
}

describe('simulator billing', () => {
  it('bills each talk 1 credit per started 15 s of its duration, takes them off GET /credits, and reports them per talk', async () => {
    const { sim, did } = await start({ credits: 100 });
    const long = Array.from({ length: 12 }, () => SHORT).join(' ');
    const ids = [
      (await did.createTalk(body(SHORT))).id,
      (await did.createTalk(body(long))).id,
      // pad_audio lengthens the video, and so the bill (D-ID's documented behaviour).
      (await did.createTalk(body(SHORT, 20))).id,
    ];
    const durations = await Promise.all(ids.map(async (id) => (await finished(did, id)).duration as number));
    const expected = durations.map((seconds) => Math.max(1, Math.ceil(seconds / 15)));
    expect(durations[0]).toBeLessThan(15);
    expect(durations[2]).toBeCloseTo((durations[0] as number) + 20, 3);
    expect(expected[1]).toBeGreaterThan(2);
    expect(expected[2]).toBe(2);

    const stats = sim.stats();
    expect(stats.billedCredits).toEqual(Object.fromEntries(ids.map((id, index) => [id, expected[index]])));
    const total = expected.reduce((sum, credits) => sum + credits, 0);
    expect(stats.totalBilledCredits).toBe(total);
    expect(await did.getCredits()).toMatchObject({ remaining: 100 - total, total: 100 });
  });

  it('bills talks that end error or rejected unless billFailedTalks is off', async () => {
    const { sim, did } = await start({ credits: 10, errorRate: 1 });
    const billed = (await did.createTalk(body(SHORT))).id;
    expect((await finished(did, billed)).status).toBe('error');
    sim.setKnobs({ billFailedTalks: false, errorRate: 0, rejectRate: 1 });
    const free = (await did.createTalk(body(SHORT))).id;
    expect((await finished(did, free)).status).toBe('rejected');
    expect(sim.stats().billedCredits).toEqual({ [billed]: 1, [free]: 0 });
    expect((await did.getCredits()).remaining).toBe(9);
  });

  it('refuses with 402 a talk that costs more than the credits left, and spends nothing', async () => {
    const { sim, did } = await start({ credits: 1 });
    const long = Array.from({ length: 6 }, () => SHORT).join(' ');
    await expect(did.createTalk(body(long))).rejects.toMatchObject({ status: 402, kind: 'InsufficientCreditsError' });
    expect(sim.stats()).toMatchObject({ totalCreates: 0, totalBilledCredits: 0 });
    await did.createTalk(body(SHORT));
    expect((await did.getCredits()).remaining).toBe(0);
  });

  it('leaves duration out of failed talks when omitDurationOnFailure is on, and keeps it on done ones', async () => {
    const { sim, did } = await start({ errorRate: 1, omitDurationOnFailure: true });
    const failed = await finished(did, (await did.createTalk(body(SHORT))).id);
    expect(failed.status).toBe('error');
    expect(failed.duration).toBeUndefined();
    sim.setKnobs({ errorRate: 0 });
    const done = await finished(did, (await did.createTalk(body(SHORT))).id);
    expect(done.duration).toBeGreaterThan(1);
  });
});
