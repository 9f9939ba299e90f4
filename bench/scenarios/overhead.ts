import { runBareBullmq } from '../baselines/bare-bullmq.js';
import { benchRows } from '../lib/rows.js';
import { fixed, type Scenario } from '../lib/report.js';
import { startBenchRedis } from '../lib/redis.js';
import { runBaselineOnce, runTalkbatchOnce, type BaselineOutcome, type RunOutcome, type TalkbatchOutcome } from '../lib/runs.js';
import { startSimulatorProcess } from '../lib/simulator.js';

const ROWS = Number(process.env.BENCH_OVERHEAD_ROWS ?? 4000);
const CONCURRENCY = 64;

/** GET /talks/{id} (and list) requests: everything but creates, 429s and downloads. */
function pollsOf(outcome: RunOutcome): number {
  const { sim } = outcome;
  return sim.totalRequests - sim.totalCreates - sim.downloads - (sim.responsesByStatus['429'] ?? 0);
}

export const overhead: Scenario = {
  name: 'overhead',
  describe: `${ROWS} rows, zero render time, concurrency ${CONCURRENCY}: rows/s end to end (downloads included) and Redis commands per row; vs the same work with no queue (p-limit(${CONCURRENCY}), no sleeps)`,
  async run(log) {
    const rows = benchRows(ROWS);
    const redis = await startBenchRedis();
    const sim = await startSimulatorProcess({ renderMs: 0 });
    try {
      // Interleaved, twice each; on a noisy machine the quicker run is the better estimate.
      // BENCH_SKIP_BASELINE=1: talkbatch alone (for profiling).
      const baselines: BaselineOutcome[] = [];
      const outcomes: TalkbatchOutcome[] = [];
      for (let round = 1; round <= 2; round += 1) {
        if (!process.env.BENCH_SKIP_BASELINE) {
          const run = await runBaselineOnce({ label: `overhead-${round}`, sim, rows, concurrency: CONCURRENCY, cap: CONCURRENCY, pollMs: 0 });
          log(`no-queue script (p-limit(${CONCURRENCY}), create → poll at once → download): ${fixed((ROWS / run.ms) * 1000, 0)} rows/s`);
          baselines.push(run);
        }
        const run = await runTalkbatchOnce({ label: `overhead-${round}`, redis, sim, rows, concurrency: CONCURRENCY, cap: CONCURRENCY, webhooks: false, timeoutMs: 5 * 60_000 });
        log(`talkbatch (TALKBATCH_CONCURRENCY=${CONCURRENCY}, polling only): ${fixed((ROWS / run.ms) * 1000, 0)} rows/s, failed ${run.failed}`);
        outcomes.push(run);
      }
      const baseline = baselines.reduce<BaselineOutcome | undefined>((best, run) => (!best || run.ms < best.ms ? run : best), undefined);
      const outcome = outcomes.reduce((best, run) => (run.ms < best.ms ? run : best));
      const baselineRate = baseline ? (ROWS / baseline.ms) * 1000 : NaN;
      // For scale: what BullMQ alone sends and runs per job (add + a worker that does nothing).
      await redis.flush();
      const bare = await runBareBullmq(redis, rows, CONCURRENCY);
      const bareSent = bare.clientCommands / bare.jobs;
      const bareServer = bare.serverCommands / bare.jobs;
      log(`bare BullMQ (addBulk + no-op worker, concurrency ${CONCURRENCY}): ${fixed(bareSent, 1)} commands/job as sent, ${fixed(bareServer, 1)} incl. inside Lua`);
      const rate = (ROWS / outcome.ms) * 1000;
      const polls = pollsOf(outcome) / ROWS;
      const perRow = outcome.clientCommands / ROWS;
      const serverPerRow = outcome.serverCommands / ROWS;
      const commandTarget = 12 + polls;
      log(`best: ${fixed(rate, 0)} rows/s vs ${fixed(baselineRate, 0)}; ${fixed(perRow, 1)} Redis commands/row as sent (${fixed(serverPerRow, 1)} incl. inside Lua), ${fixed(polls, 2)} polls/row`);
      const byName = Object.entries(outcome.clientCommandsByName)
        .sort(([, a], [, b]) => b - a)
        .map(([name, count]) => `${name} ${fixed(count / ROWS, 2)}`)
        .join(', ');
      log(`per row as sent: ${byName}`);
      const cpu = (used: Record<string, number>, ms: number): string =>
        Object.entries(used)
          .map(([name, value]) => `${name} ${fixed((value / ms) * 1000 * 100, 0)} %`)
          .join(', ');
      log(`CPU (100 % = one core): talkbatch run: ${cpu(outcome.cpu, outcome.ms)}${baseline ? `; no-queue run: ${cpu(baseline.cpu, baseline.ms)}` : ''}`);
      return {
        figures: [
          {
            scenario: 'overhead',
            metric: `rows/s end to end, ${ROWS} rows, render 0, concurrency ${CONCURRENCY}`,
            talkbatch: `${fixed(rate, 0)} (${fixed(rate / baselineRate)} of no-queue)`,
            baseline: `${fixed(baselineRate, 0)} (no queue, no Redis)`,
            target: '≥ 400',
            met: rate >= 400 && outcomes.every((run) => run.failed === 0),
          },
          {
            scenario: 'overhead',
            metric: 'Redis commands per row, as sent (a Lua script call = 1)',
            talkbatch: fixed(perRow, 1),
            baseline: `${fixed(bareSent, 1)} (bare BullMQ: add + no-op worker)`,
            target: `≤ 12 + ${fixed(polls, 2)} polls = ${fixed(commandTarget, 1)}`,
            met: perRow <= commandTarget,
          },
          {
            scenario: 'overhead',
            metric: 'Redis commands per row, INFO commandstats (incl. inside Lua)',
            talkbatch: fixed(serverPerRow, 1),
            baseline: `${fixed(bareServer, 1)} (bare BullMQ)`,
            target: '',
          },
        ],
        details: {
          rows: ROWS,
          concurrency: CONCURRENCY,
          talkbatch: { ms: outcome.ms, rate, failed: outcome.failed, pollsPerRow: polls, clientCommandsPerRow: perRow, serverCommandsPerRow: serverPerRow, clientCommandsByName: outcome.clientCommandsByName, serverCommandsByName: outcome.serverCommandsByName, cpuSeconds: outcome.cpu },
          baseline: baseline && { ms: baseline.ms, rate: baselineRate, failed: baseline.failed, cpuSeconds: baseline.cpu },
          bareBullmq: { ...bare, clientCommandsPerJob: bareSent, serverCommandsPerJob: bareServer },
        },
      };
    } finally {
      await sim.stop();
      await redis.stop();
    }
  },
};
