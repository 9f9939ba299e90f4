import { benchRows } from '../lib/rows.js';
import { fixed, seconds, type Figure, type Scenario } from '../lib/report.js';
import { startBenchRedis } from '../lib/redis.js';
import { requestsPerRow, runBaselineOnce, runTalkbatchOnce, type RunOutcome } from '../lib/runs.js';
import { startSimulatorProcess } from '../lib/simulator.js';

const ROWS = Number(process.env.BENCH_SLOTS_ROWS ?? 240);
const RENDER_MS = 2_000;
const CAP = 8;
/** D-ID's render times vary; ±25 % around T. (With none at all, a 2 s poll lines up with 2 s renders: see docs/performance.md.) */
const JITTER = Number(process.env.BENCH_RENDER_JITTER ?? 0.25);

function ratio(outcome: RunOutcome): number {
  return outcome.ms / outcome.idealMs;
}

function describeRun(outcome: RunOutcome): string {
  return `${fixed(ratio(outcome))} (${seconds(outcome.ms)})`;
}

/** How much of the ratio is the tail no scheduler avoids with these render times. */
function floorOf(outcome: RunOutcome): string {
  return `packing floor ${fixed(outcome.listScheduleMs / outcome.idealMs, 3)}`;
}

async function slotScenario(log: (line: string) => void, options: { name: string; configured: number; modes: Array<'webhooks' | 'polling'>; target: number[] }) {
  const rows = benchRows(ROWS);
  const redis = await startBenchRedis();
  const sim = await startSimulatorProcess({ renderMs: RENDER_MS, renderJitter: JITTER, maxConcurrent: CAP, allowHttpWebhooks: true });
  const figures: Figure[] = [];
  const details: Record<string, unknown> = { rows: ROWS, renderMs: RENDER_MS, jitter: JITTER, cap: CAP, configured: options.configured, nominalIdealMs: (ROWS * RENDER_MS) / CAP };
  try {
    log(`baseline: p-limit(${options.configured}) + poll every 2 s, ${ROWS} rows`);
    const baseline = await runBaselineOnce({ label: options.name, sim, rows, concurrency: options.configured, cap: CAP });
    log(`  ${describeRun(baseline)}, 429s ${baseline.rateLimited}, ${floorOf(baseline)}`);
    details.baseline = { ms: baseline.ms, idealMs: baseline.idealMs, listScheduleMs: baseline.listScheduleMs, ratio: ratio(baseline), done: baseline.done, failed: baseline.failed, rateLimited: baseline.rateLimited, requestsPerRow: requestsPerRow(baseline, ROWS), duplicates: baseline.sim.duplicateUserData.length };

    for (const [index, mode] of options.modes.entries()) {
      log(`talkbatch (${mode}), TALKBATCH_CONCURRENCY=${options.configured}`);
      const outcome = await runTalkbatchOnce({
        label: `${options.name}-${mode}`,
        redis,
        sim,
        rows,
        concurrency: options.configured,
        cap: CAP,
        webhooks: mode === 'webhooks',
        timeoutMs: 10 * 60_000,
      });
      const rate429 = outcome.sim.responsesByStatus['429'] ?? 0;
      log(`  ${describeRun(outcome)}, ${floorOf(outcome)}, failed ${outcome.failed}, 429s ${rate429}, D-ID requests/row ${fixed(requestsPerRow(outcome, ROWS))}, render limit at end ${outcome.renderLimitAtEnd}`);
      details[mode] = {
        ms: outcome.ms,
        idealMs: outcome.idealMs,
        listScheduleMs: outcome.listScheduleMs,
        ratio: ratio(outcome),
        done: outcome.done,
        failed: outcome.failed,
        rateLimited: rate429,
        requestsPerRow: requestsPerRow(outcome, ROWS),
        maxRendersSeen: outcome.sim.maxConcurrentRendersSeen,
        duplicates: outcome.sim.duplicateUserData.length,
        renderLimitAtEnd: outcome.renderLimitAtEnd,
      };
      const target = options.target[index] ?? 1.15;
      figures.push({
        scenario: options.name,
        metric: `makespan / (ΣT/C), ${mode === 'webhooks' ? 'webhooks' : 'polling only, default settings'}`,
        talkbatch: describeRun(outcome),
        baseline: describeRun(baseline),
        target: `≤ ${target.toFixed(2)}`,
        met: ratio(outcome) <= target && outcome.failed === 0 && outcome.sim.duplicateUserData.length === 0,
      });
      figures.push({
        scenario: options.name,
        metric: `429s / D-ID requests per row (${mode})`,
        talkbatch: `${rate429} / ${fixed(requestsPerRow(outcome, ROWS), 1)}`,
        baseline: `${baseline.rateLimited} / ${fixed(requestsPerRow(baseline, ROWS), 1)}`,
        target: '',
      });
    }
  } finally {
    await sim.stop();
    await redis.stop();
  }
  return { figures, details };
}

export const slots: Scenario = {
  name: 'slots',
  describe: `N=${ROWS}, T=2 s ±${JITTER * 100} %, C=8 (simulator process, 429 above 8); talkbatch with webhooks and polling only vs p-limit(8) + 2 s polls`,
  run: (log) => slotScenario(log, { name: 'slots', configured: CAP, modes: ['webhooks', 'polling'], target: [1.05, 1.15] }),
};

export const slotsCapUnknown: Scenario = {
  name: 'slots-cap-unknown',
  describe: `as slots, but configured for 32 against the plan's 8; talkbatch polling only vs p-limit(32) + 2 s polls`,
  run: (log) => slotScenario(log, { name: 'slots-cap-unknown', configured: 32, modes: ['polling'], target: [1.15] }),
};
