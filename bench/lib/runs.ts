import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ManifestRow } from '../../src/manifest/index.js';
import type { RowResult } from '../../src/queue/payload.js';
import { runPlimitPoll } from '../baselines/plimit-poll.js';
import { cpuMeter } from './cpu.js';
import { commandCounts, diffStats, resetCommandCounts, total, type BenchRedis } from './redis.js';
import { renderMsOf, type SimStats, type SimTalk, type SimulatorProcess } from './simulator.js';
import { startTalkbatch } from './talkbatch.js';
import { queueKeys } from '../../src/queue/keys.js';
import { readRenderLimit } from '../../src/queue/render-slots.js';

export interface RunOutcome {
  label: string;
  ms: number;
  done: number;
  failed: number;
  /** Σ render time of this run's talks (D-ID's timestamps) divided by the render cap: the floor for the makespan. */
  idealMs: number;
  /** The same renders packed by a zero-overhead scheduler (listScheduleOf): the floor once the tail is counted. */
  listScheduleMs: number;
  sim: SimStats;
  /** This run's talks, for latency figures. */
  talks: SimTalk[];
  /** CPU seconds used during the run, per process. */
  cpu: Record<string, number>;
}

export interface TalkbatchOutcome extends RunOutcome {
  /** Commands as sent by talkbatch's clients (a Lua script call is one). */
  clientCommands: number;
  clientCommandsByName: Record<string, number>;
  /** INFO commandstats delta, minus the bench's own polling: counts the commands inside Lua scripts too. */
  serverCommands: number;
  serverCommandsByName: Record<string, number>;
  /** Job return values, for latency figures. */
  results: RowResult[];
  /** The render limit the workers follow at the end (adaptive concurrency's finding). */
  renderLimitAtEnd: number | null;
}

export async function talksOf(sim: SimulatorProcess, tag: string): Promise<SimTalk[]> {
  return (await sim.talks()).filter((talk) => talk.user_data?.startsWith(tag));
}

/**
 * The makespan of a zero-overhead scheduler that starts each of these renders (in the order they were
 * created) the moment one of `cap` slots frees: what no scheduler can beat in that order, since the
 * last renders cannot all end together.
 */
export function listScheduleOf(talks: readonly SimTalk[], cap: number): number {
  const ordered = [...talks].sort((a, b) => Date.parse(a.created_at ?? '') - Date.parse(b.created_at ?? ''));
  const slots: number[] = Array.from({ length: cap }, () => 0);
  for (const talk of ordered) {
    let earliest = 0;
    for (let i = 1; i < slots.length; i += 1) if ((slots[i] ?? 0) < (slots[earliest] ?? 0)) earliest = i;
    slots[earliest] = (slots[earliest] ?? 0) + (renderMsOf(talk) ?? 0);
  }
  return Math.max(...slots);
}

export function idealOf(talks: readonly SimTalk[], cap: number): number {
  let sum = 0;
  for (const talk of talks) sum += renderMsOf(talk) ?? 0;
  return sum / cap;
}

export async function settle(sim: SimulatorProcess): Promise<void> {
  for (let i = 0; i < 200 && (await sim.stats()).rendersInFlight > 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
  await sim.resetStats();
}

export async function runTalkbatchOnce(options: {
  label: string;
  redis: BenchRedis;
  sim: SimulatorProcess;
  rows: ManifestRow[];
  concurrency: number;
  cap: number;
  webhooks: boolean;
  settings?: Record<string, string>;
  timeoutMs: number;
}): Promise<TalkbatchOutcome> {
  const { redis, sim } = options;
  await redis.flush();
  await settle(sim);
  const batchId = `tb-${options.label}-${Date.now().toString(36)}`;
  const setup = await startTalkbatch({
    redisUrl: redis.url,
    apiUrl: sim.url,
    apiKey: sim.apiKey,
    concurrency: options.concurrency,
    webhooks: options.webhooks,
    ...(options.settings ? { settings: options.settings } : {}),
  });
  try {
    const statsBefore = await redis.commandStats();
    resetCommandCounts();
    const meter = cpuMeter({ 'redis-server': redis.server.process.pid, simulator: sim.child.pid });
    const started = performance.now();
    await setup.enqueue(batchId, options.rows);
    const counts = await setup.waitForBatch(batchId, options.rows.length, options.timeoutMs);
    const ms = performance.now() - started;
    const cpu = meter.stop();
    const sent = commandCounts();
    const server = diffStats(statsBefore, await redis.commandStats());
    // The bench's own commands (ledger polling, INFO) reach commandstats too: take them out.
    for (const [name, count] of sent.bench) server.set(name, Math.max(0, (server.get(name) ?? 0) - count));
    server.set('info', 0);
    const simStats = await sim.stats();
    const talks = await talksOf(sim, batchId);
    const completed = await setup.handle.queue.getJobs(['completed'], 0, -1);
    return {
      label: options.label,
      ms,
      ...counts,
      idealMs: idealOf(talks, options.cap),
      listScheduleMs: listScheduleOf(talks, options.cap),
      sim: simStats,
      talks,
      cpu,
      clientCommands: total(sent.talkbatch),
      clientCommandsByName: Object.fromEntries(sent.talkbatch),
      serverCommands: total(server),
      serverCommandsByName: Object.fromEntries([...server].filter(([, count]) => count > 0)),
      results: completed.map((job) => job.returnvalue).filter((value): value is RowResult => Boolean(value)),
      renderLimitAtEnd: await readRenderLimit(setup.handle.redis, queueKeys(setup.config.prefix, setup.config.queueName)),
    };
  } finally {
    await setup.close();
  }
}

export interface BaselineOutcome extends RunOutcome {
  rateLimited: number;
  /** When each row's MP4 was on disk, by talk id (epoch ms). */
  doneAt: Map<string, number>;
}

export async function runBaselineOnce(options: {
  label: string;
  sim: SimulatorProcess;
  rows: ManifestRow[];
  concurrency: number;
  cap: number;
  pollMs?: number;
}): Promise<BaselineOutcome> {
  const { sim } = options;
  await settle(sim);
  const tag = `bl-${options.label}-${Date.now().toString(36)}`;
  const outDir = await mkdtemp(join(tmpdir(), 'tb-bench-baseline-'));
  const doneAt = new Map<string, number>();
  try {
    const meter = cpuMeter({ simulator: sim.child.pid });
    const result = await runPlimitPoll({
      apiUrl: sim.url,
      apiKey: sim.apiKey,
      rows: options.rows.map((row) => ({ id: `${tag}-${row.rowKey}`, body: row.talk })),
      concurrency: options.concurrency,
      outDir,
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
      onRowDone: (_id, talkId) => doneAt.set(talkId, Date.now()),
    });
    const cpu = meter.stop();
    const simStats = await sim.stats();
    const talks = await talksOf(sim, tag);
    return { label: options.label, ms: result.ms, done: result.done, failed: result.failed, idealMs: idealOf(talks, options.cap), listScheduleMs: listScheduleOf(talks, options.cap), sim: simStats, talks, cpu, rateLimited: result.rateLimited, doneAt };
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

export function requestsPerRow(outcome: RunOutcome, rows: number): number {
  return outcome.sim.totalRequests / rows;
}
