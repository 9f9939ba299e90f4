import { estimateTalkCredits, expectedTalkSeconds } from '../../src/did/billing.js';
import type { ManifestRow } from '../../src/manifest/index.js';
import { estimateSeconds } from '../../src/manifest/row-script.js';
import { batchCredits } from '../../src/queue/credits.js';
import { IMAGE } from '../lib/rows.js';
import { fixed, type Scenario } from '../lib/report.js';
import { startBenchRedis } from '../lib/redis.js';
import { talksOf } from '../lib/runs.js';
import { startSimulatorProcess } from '../lib/simulator.js';
import { startTalkbatch } from '../lib/talkbatch.js';

const ROWS = Number(process.env.BENCH_CREDITS_ROWS ?? 300);
const START_CREDITS = 1_000_000;

/** Sentences of personalised sales and onboarding videos: short and long words, commas, questions, figures. */
const SENTENCES = [
  'Hi {name}!',
  'Thanks for being with {company} for another year.',
  'I made this short video to show you what is new this month, and how it helps your team.',
  'Our spring catalogue is out, with forty new products for small offices.',
  'If you renew before the end of March, the first month is on us.',
  'Questions? Just reply to this email; I read every message myself.',
  'Last year, customers like you saved an average of 12 percent on supplies.',
  'The new dashboard shows every order, invoice and delivery in one place.',
  'We also changed how returns work: you now have sixty days, not thirty, and pickup is free.',
  'Your account manager, Priya, will call you next week to walk you through the changes.',
  'Implementation typically takes two to three weeks, depending on integrations.',
  'Talk soon!',
  'Thank you for trusting us with your business.',
  'Here is a quick summary of your plan, your usage, and three ideas to get more from it.',
];
const NAMES = ['Ana', 'Bartholomew', 'Chen', 'Dara', 'Eli', 'Fatima', 'Goran', 'Hana'];
const COMPANIES = ['Northwind', 'Contoso Pharmaceuticals', 'Fabrikam', 'Tailspin Toys', 'Litware'];

/** A fixed pseudo-random sequence (LCG), so every run bills the same scripts. */
function sequence(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };
}

/**
 * A realistic mix of script lengths: 30 % greetings (1-2 sentences, a few seconds), 40 % standard personalised
 * messages (3-8), 20 % long ones (10-24), 10 % explainers (30-60 sentences, a few minutes); one row in ten pads 1-5 s.
 */
export function creditRows(count: number): ManifestRow[] {
  const random = sequence(17);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  return Array.from({ length: count }, (_, index) => {
    const draw = random();
    const sentences = draw < 0.3 ? 1 + Math.floor(random() * 2) : draw < 0.7 ? 3 + Math.floor(random() * 6) : draw < 0.9 ? 10 + Math.floor(random() * 15) : 30 + Math.floor(random() * 31);
    const name = pick(NAMES);
    const company = pick(COMPANIES);
    const text = Array.from({ length: sentences }, () => pick(SENTENCES).replace('{name}', name).replace('{company}', company)).join(' ');
    const pad = random() < 0.1 ? 1 + Math.floor(random() * 5) : undefined;
    const id = `row${String(index).padStart(5, '0')}`;
    return {
      line: index + 2,
      rowKey: id,
      input: { id, first_name: name, company },
      talk: { source_url: IMAGE, script: { type: 'text' as const, input: text }, ...(pad === undefined ? {} : { config: { pad_audio: pad } }) },
      outputName: `${id}.mp4`,
      // What the manifest reader estimates for the row.
      estimatedSeconds: estimateSeconds(text, false),
    };
  });
}

export const credits: Scenario = {
  name: 'credits',
  describe: `${ROWS} rows of mixed script lengths (a few seconds to a few minutes): talkbatch's credit estimate (before any talk is made) against what the simulator billed, and the ledger's before − after`,
  async run(log) {
    const rows = creditRows(ROWS);
    const redis = await startBenchRedis();
    const sim = await startSimulatorProcess({ renderMs: 200, credits: START_CREDITS });
    const setup = await startTalkbatch({ redisUrl: redis.url, apiUrl: sim.url, apiKey: sim.apiKey, concurrency: 32, webhooks: false, finisher: true });
    const batchId = `credits-${Date.now().toString(36)}`;
    try {
      await setup.enqueue(batchId, rows);
      const counts = await setup.waitForBatch(batchId, rows.length, 5 * 60_000);
      let ledger = await setup.handle.batches.creditLedger(batchId);
      for (let i = 0; i < 200 && ledger.after === null; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        ledger = await setup.handle.batches.creditLedger(batchId);
      }
      const stats = await sim.stats();
      const talks = new Map((await talksOf(sim, batchId)).map((talk) => [talk.user_data?.match(/-(row\d+)/)?.[1] ?? '', talk]));
      const view = batchCredits(ledger);

      let estimated = 0;
      let exact = 0;
      let absError = 0;
      let estimatedSeconds = 0;
      let spokenSeconds = 0;
      const byLength: Record<string, { rows: number; estimated: number; billed: number }> = {};
      for (const row of rows) {
        const talk = talks.get(row.rowKey);
        const billed = talk ? stats.billedCredits[talk.id] : undefined;
        if (talk === undefined || billed === undefined) continue;
        const estimate = estimateTalkCredits(row.estimatedSeconds, row.talk);
        estimated += estimate;
        if (estimate === billed) exact += 1;
        absError += Math.abs(estimate - billed) / billed;
        estimatedSeconds += expectedTalkSeconds(row.estimatedSeconds, row.talk) ?? 0;
        spokenSeconds += talk.duration ?? 0;
        const bucket = billed <= 1 ? '≤15 s' : billed <= 2 ? '15-30 s' : billed <= 8 ? '30 s-2 min' : '> 2 min';
        const entry = (byLength[bucket] ??= { rows: 0, estimated: 0, billed: 0 });
        entry.rows += 1;
        entry.estimated += estimate;
        entry.billed += billed;
      }
      const billedTotal = stats.totalBilledCredits;
      const ratio = estimated / billedTotal;
      log(`done ${counts.done}, failed ${counts.failed}; estimate ${estimated} credits, simulator billed ${billedTotal}: ratio ${fixed(ratio, 3)}`);
      log(`per row: ${exact} of ${rows.length} exact, mean |error| ${fixed((absError / rows.length) * 100, 1)} %; seconds estimated / spoken ${fixed(estimatedSeconds / spokenSeconds, 3)}`);
      for (const [bucket, entry] of Object.entries(byLength)) log(`  ${bucket}: ${entry.rows} rows, estimate/billed ${fixed(entry.estimated / entry.billed, 3)}`);
      log(`ledger: before ${view.before}, after ${view.after}, used ${view.used}; per-row credits counted ${view.estimated}`);
      return {
        figures: [
          {
            scenario: 'credits',
            metric: `credit estimate ÷ simulator's bill, ${rows.length} rows of mixed length (baseline column: ledger's before − after ÷ bill)`,
            talkbatch: fixed(ratio, 3),
            baseline: view.used === null ? 'n/a' : fixed(view.used / billedTotal, 3),
            target: '0.90-1.10',
            met: ratio >= 0.9 && ratio <= 1.1 && view.used === billedTotal,
          },
        ],
        details: {
          rows: rows.length,
          done: counts.done,
          failed: counts.failed,
          estimatedCredits: estimated,
          billedCredits: billedTotal,
          ratio,
          exactRows: exact,
          meanAbsErrorPerRow: absError / rows.length,
          secondsRatio: estimatedSeconds / spokenSeconds,
          byLength,
          ledger: view,
        },
      };
    } finally {
      await setup.close();
      await sim.stop();
      await redis.stop();
    }
  },
};
