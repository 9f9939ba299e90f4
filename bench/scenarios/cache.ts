import type { ManifestRow } from '../../src/manifest/index.js';
import { benchRows } from '../lib/rows.js';
import { fixed, type Scenario } from '../lib/report.js';
import { commandCounts, diffStats, resetCommandCounts, startBenchRedis, total, type BenchRedis } from '../lib/redis.js';
import { settle } from '../lib/runs.js';
import { startSimulatorProcess, type SimulatorProcess } from '../lib/simulator.js';
import { startTalkbatch, type TalkbatchSetup } from '../lib/talkbatch.js';

const ROWS = Number(process.env.BENCH_CACHE_ROWS ?? 2000);
const CONCURRENCY = 64;

interface Pass {
  ms: number;
  done: number;
  failed: number;
  creates: number;
  /** Commands as sent by talkbatch's clients (a Lua script call is one). */
  sent: number;
  sentByName: Record<string, number>;
  /** INFO commandstats delta minus the bench's own commands: includes what runs inside Lua. */
  server: number;
}

/** One batch of `rows` on an already running setup, counted from enqueue to the last outcome. */
async function pass(setup: TalkbatchSetup, redis: BenchRedis, sim: SimulatorProcess, batchId: string, rows: ManifestRow[], cache: boolean): Promise<Pass> {
  await settle(sim);
  const before = await redis.commandStats();
  resetCommandCounts();
  const started = performance.now();
  await setup.enqueue(batchId, rows, { cache });
  const counts = await setup.waitForBatch(batchId, rows.length, 10 * 60_000);
  const ms = performance.now() - started;
  const sent = commandCounts();
  const server = diffStats(before, await redis.commandStats());
  for (const [name, count] of sent.bench) server.set(name, Math.max(0, (server.get(name) ?? 0) - count));
  server.set('info', 0);
  return { ms, ...counts, creates: (await sim.stats()).totalCreates, sent: total(sent.talkbatch), sentByName: Object.fromEntries(sent.talkbatch), server: total(server) };
}

/*
 * What the render cache costs a row it cannot serve, and what it saves on one it can. Each request is unique (the
 * bench rows' 60 scripts get the row key appended), so the first batch with the cache on is all misses: its Redis
 * commands per row against the same rows with the cache off are the look-up's and the record's cost. The same rows
 * again under a new batch id are all hits.
 */
export const cache: Scenario = {
  name: 'cache',
  describe: `${ROWS} unique rows, zero render time, concurrency ${CONCURRENCY}: Redis commands per row with the render cache missing every row vs the cache off; then the same rows again, all copied from the cache`,
  async run(log) {
    const rows = benchRows(ROWS).map((row) => ({ ...row, talk: { ...row.talk, script: { type: 'text' as const, input: `${'input' in row.talk.script ? row.talk.script.input : ''} (${row.rowKey})` } } }));
    const redis = await startBenchRedis();
    const sim = await startSimulatorProcess({ renderMs: 0 });
    const stamp = Date.now().toString(36);
    try {
      // Off and on alternate twice, each on an empty Redis; the quicker run of each counts for speed, commands are averaged.
      const off: Pass[] = [];
      const miss: Pass[] = [];
      let hit: Pass | undefined;
      for (let round = 1; round <= 2; round += 1) {
        for (const cacheOn of [false, true]) {
          await redis.flush();
          const setup = await startTalkbatch({ redisUrl: redis.url, apiUrl: sim.url, apiKey: sim.apiKey, concurrency: CONCURRENCY, webhooks: false });
          try {
            const label = cacheOn ? 'miss' : 'off';
            const run = await pass(setup, redis, sim, `tb-cache-${label}-${round}-${stamp}`, rows, cacheOn);
            log(`cache ${cacheOn ? 'on, every row a miss' : 'off'}: ${fixed((ROWS / run.ms) * 1000, 0)} rows/s, ${fixed(run.sent / ROWS, 2)} commands/row as sent (${fixed(run.server / ROWS, 1)} incl. inside Lua), ${run.creates} talks, failed ${run.failed}`);
            (cacheOn ? miss : off).push(run);
            if (cacheOn && round === 2) {
              // The same rows under a new batch id, on the same Redis and output folder: every row is a copy.
              hit = await pass(setup, redis, sim, `tb-cache-hit-${stamp}`, rows, true);
              log(`cache on, every row a hit: ${fixed((ROWS / hit.ms) * 1000, 0)} rows/s, ${fixed(hit.sent / ROWS, 2)} commands/row as sent, ${hit.creates} talks, failed ${hit.failed}`);
            }
          } finally {
            await setup.close();
          }
        }
      }
      const mean = (passes: Pass[], of: (pass: Pass) => number): number => passes.reduce((sum, p) => sum + of(p), 0) / passes.length / ROWS;
      const offSent = mean(off, (p) => p.sent);
      const missSent = mean(miss, (p) => p.sent);
      const offServer = mean(off, (p) => p.server);
      const missServer = mean(miss, (p) => p.server);
      const added = missSent - offSent;
      const byName = (passes: Pass[]): Record<string, number> => {
        const sums: Record<string, number> = {};
        for (const p of passes) for (const [name, count] of Object.entries(p.sentByName)) sums[name] = (sums[name] ?? 0) + count / passes.length / ROWS;
        return sums;
      };
      const offByName = byName(off);
      const missByName = byName(miss);
      const names = [...new Set([...Object.keys(offByName), ...Object.keys(missByName)])].sort();
      log(`per row as sent, off → miss: ${names.map((name) => `${name} ${fixed(offByName[name] ?? 0, 2)}→${fixed(missByName[name] ?? 0, 2)}`).join(', ')}`);
      const best = (passes: Pass[]): Pass => passes.reduce((a, b) => (b.ms < a.ms ? b : a));
      const offRate = (ROWS / best(off).ms) * 1000;
      const missRate = (ROWS / best(miss).ms) * 1000;
      const hitRate = hit ? (ROWS / hit.ms) * 1000 : NaN;
      const allDone = [...off, ...miss, ...(hit ? [hit] : [])].every((p) => p.failed === 0 && p.done === ROWS);
      return {
        figures: [
          {
            scenario: 'cache',
            metric: `Redis commands per row added by the render cache on a miss, as sent (a Lua call = 1), ${ROWS} unique rows`,
            talkbatch: `${fixed(added, 2)} (${fixed(missSent, 2)} per row; ratio ${fixed(missSent / offSent, 3)})`,
            baseline: `${fixed(offSent, 2)} per row (same rows, same run, cache off)`,
            target: '< 1',
            met: added < 1 && allDone,
          },
          {
            scenario: 'cache',
            metric: 'Redis commands per row added on a miss, INFO commandstats (incl. inside Lua)',
            talkbatch: `${fixed(missServer - offServer, 1)} (${fixed(missServer, 1)} per row)`,
            baseline: `${fixed(offServer, 1)} per row (cache off)`,
            target: '',
          },
          {
            scenario: 'cache',
            metric: 'rows/s end to end: cache missing every row / cache off',
            talkbatch: fixed(missRate, 0),
            baseline: fixed(offRate, 0),
            target: '',
          },
          {
            scenario: 'cache',
            metric: `the same ${ROWS} rows again under a new batch id: talks created, rows/s (copies)`,
            talkbatch: hit ? `${hit.creates} talks, ${fixed(hitRate, 0)} rows/s, ${fixed(hit.sent / ROWS, 2)} commands/row` : 'n/a',
            baseline: `${best(miss).creates} talks, ${fixed(missRate, 0)} rows/s (first run, all misses)`,
            target: '0 talks',
            met: hit !== undefined && hit.creates === 0 && hit.done === ROWS,
          },
        ],
        details: { rows: ROWS, concurrency: CONCURRENCY, off, miss, hit, perRowAsSent: { off: offByName, miss: missByName } },
      };
    } finally {
      await sim.stop();
      await redis.stop();
    }
  },
};
