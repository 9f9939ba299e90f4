import { benchRows } from '../lib/rows.js';
import { millis, quantile, type Scenario } from '../lib/report.js';
import { startBenchRedis } from '../lib/redis.js';
import { runBaselineOnce, runTalkbatchOnce, type TalkbatchOutcome } from '../lib/runs.js';
import { startSimulatorProcess, type SimTalk } from '../lib/simulator.js';

const ROWS = Number(process.env.BENCH_LATENCY_ROWS ?? 160);
const CONCURRENCY = 16;
const RENDER_MS = 1_500;
const JITTER = 0.3;

function finishedAt(talk: SimTalk): number | undefined {
  return talk.modified_at && talk.status === 'done' ? Date.parse(talk.modified_at) : undefined;
}

/** ms from D-ID finishing each talk (its modified_at) to the row's MP4 being on disk (the row result's finishedAt). */
function latencies(outcome: TalkbatchOutcome): number[] {
  const talks = new Map(outcome.talks.map((talk) => [talk.id, talk]));
  const values: number[] = [];
  for (const result of outcome.results) {
    const talk = talks.get(result.talkId);
    const end = talk && finishedAt(talk);
    if (end !== undefined) values.push(Date.parse(result.finishedAt) - end);
  }
  return values;
}

const p = (values: number[]): string => `${millis(quantile(values, 0.5))} / ${millis(quantile(values, 0.95))}`;

export const latency: Scenario = {
  name: 'latency',
  describe: `${ROWS} rows, T=1.5 s ±30 %, concurrency ${CONCURRENCY}: D-ID finishing a talk → MP4 on disk, with webhooks vs polling only (and the 2 s polling script)`,
  async run(log) {
    const rows = benchRows(ROWS);
    const redis = await startBenchRedis();
    const sim = await startSimulatorProcess({ renderMs: RENDER_MS, renderJitter: JITTER, allowHttpWebhooks: true });
    try {
      const run = async (webhooks: boolean): Promise<number[]> => {
        const outcome = await runTalkbatchOnce({ label: `latency-${webhooks ? 'webhooks' : 'polling'}`, redis, sim, rows, concurrency: CONCURRENCY, cap: CONCURRENCY, webhooks, timeoutMs: 5 * 60_000 });
        const values = latencies(outcome);
        log(`talkbatch ${webhooks ? 'webhooks' : 'polling only'}: p50/p95 ${p(values)} (max ${millis(Math.max(...values))}, ${values.length} rows, failed ${outcome.failed})`);
        return values;
      };
      const withWebhooks = await run(true);
      const polling = await run(false);
      const script = await runBaselineOnce({ label: 'latency', sim, rows, concurrency: CONCURRENCY, cap: CONCURRENCY });
      const scriptValues = script.talks.flatMap((talk) => {
        const end = finishedAt(talk);
        const done = script.doneAt.get(talk.id);
        return end !== undefined && done !== undefined ? [done - end] : [];
      });
      log(`p-limit + 2 s polls: p50/p95 ${p(scriptValues)}`);
      return {
        figures: [
          {
            scenario: 'latency',
            metric: 'talk done at D-ID → MP4 on disk, p50 / p95: webhooks (talkbatch) vs polling only (baseline column)',
            talkbatch: p(withWebhooks),
            baseline: p(polling),
            target: 'p95 < 500 ms with webhooks',
            met: quantile(withWebhooks, 0.95) < 500,
          },
          {
            scenario: 'latency',
            metric: 'same, p50 / p95: talkbatch polling only vs p-limit + 2 s polls',
            talkbatch: p(polling),
            baseline: p(scriptValues),
            target: '',
          },
        ],
        details: {
          rows: ROWS,
          webhooks: { p50: quantile(withWebhooks, 0.5), p95: quantile(withWebhooks, 0.95), max: Math.max(...withWebhooks) },
          polling: { p50: quantile(polling, 0.5), p95: quantile(polling, 0.95), max: Math.max(...polling) },
          script: { p50: quantile(scriptValues, 0.5), p95: quantile(scriptValues, 0.95), max: Math.max(...scriptValues) },
        },
      };
    } finally {
      await sim.stop();
      await redis.stop();
    }
  },
};
