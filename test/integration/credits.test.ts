import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchService } from '../../src/app/index.js';
import type { Config } from '../../src/config/index.js';
import { estimateTalkCredits } from '../../src/did/billing.js';
import { canonicalJson } from '../../src/queue/credits.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { startSimulator, type Simulator, type SimulatorKnobs } from '../../src/simulator/server.js';
import { runCli } from '../helpers/cli.js';
import { testConfig } from '../helpers/context.js';
import { IMAGE, row, startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';

const KEY = 'credits-api-key-0123456789abcdef';
const SENTENCE = 'Thanks for being with us this spring, and here is what is new for your team.';
/** Outcome draws in turn: error, rejected, done, done (errorRate 0.25, rejectRate 0.25): a quarter of the talks each fail. */
function cyclingRandom(values: readonly number[]): () => number {
  let next = 0;
  return () => values[next++ % values.length] as number;
}

interface Rig {
  sim: Simulator;
  config: Config;
  server: RunningServer;
}

let rig: Rig | undefined;
let harness: Harness | undefined;
let service: BatchService | undefined;

afterEach(async () => {
  await rig?.server.close();
  await rig?.sim.close();
  await service?.close();
  await harness?.close();
  rig = undefined;
  harness = undefined;
  service = undefined;
});

/** What `talkbatch serve --with-worker` runs, against a simulator whose outcomes come in a fixed turn. */
async function startRig(knobs: Partial<SimulatorKnobs>, random: () => number): Promise<Rig> {
  const sim = await startSimulator({ knobs: { renderMs: 150, credits: 10_000, ...knobs }, random });
  const config = await testConfig({ DID_API_URL: sim.url, DID_API_KEY: sim.apiKey, TALKBATCH_API_KEYS: KEY });
  const server = await startServer({ config, redisUrl: config.redisUrl as string, logger: silentLogger, host: '127.0.0.1', port: 0, withWorker: true });
  rig = { sim, config, server };
  return rig;
}

async function api(path: string, init: RequestInit = {}): Promise<Response> {
  const { server } = rig as Rig;
  return fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${KEY}`, ...(init.headers as Record<string, string> | undefined) } });
}

interface BatchJson {
  progress: number;
  finishedAt: string | null;
  credits: { before: number | null; after: number | null; used: number | null; estimated: number };
}

/** Until every row has an outcome and the finisher has read D-ID's balance after it. */
async function untilCredited(batchId: string): Promise<BatchJson> {
  let batch: BatchJson | undefined;
  await vi.waitFor(
    async () => {
      batch = (await (await api(`/v1/batches/${batchId}?rowLimit=0`)).json()) as BatchJson;
      expect(batch.progress).toBe(1);
      expect(batch.credits.after).not.toBeNull();
    },
    { timeout: 20_000, interval: 100 },
  );
  return batch as BatchJson;
}

async function csv(path: string): Promise<Record<string, string>[]> {
  const response = await api(path);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/csv/);
  return parse<Record<string, string>>(await response.text(), { columns: true });
}

/** The talk ids the simulator itself ended error or rejected. */
function failedAtSimulator(sim: Simulator): string[] {
  return Object.keys(sim.stats().billedCredits)
    .filter((id) => ['error', 'rejected'].includes((sim.talk(id) as { status: string }).status))
    .sort();
}

/** SHA-256 of the body the simulator received for a talk, canonical, without the webhook (queue/credits.ts requestSha256). */
function receivedSha256(sim: Simulator, talkId: string): string {
  const { webhook: _webhook, ...received } = sim.createRequest(talkId) as Record<string, unknown>;
  return createHash('sha256').update(canonicalJson(received)).digest('hex');
}

describe('credit ledger', () => {
  it('records D-ID\'s balance before and after a batch, each row\'s credits as the simulator billed them, and lists the paid failures', async () => {
    const { sim, config, server } = await startRig({ errorRate: 0.25, rejectRate: 0.25 }, cyclingRandom([0.1, 0.4, 0.9, 0.9]));
    // Lengths from one credit to several, and pad_audio, which D-ID bills as video too.
    const rows = [1, 1, 1, 2, 3, 5, 9, 1].map((sentences, index) => ({
      id: `r${index}`,
      image_url: IMAGE,
      script: Array.from({ length: sentences }, () => SENTENCE).join(' '),
      ...(index === 7 ? { pad_audio: '20' } : {}),
    }));
    const created = await api('/v1/batches', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rows, options: { batchId: 'paid', cache: false } }) });
    expect(created.status).toBe(201);
    const batch = await untilCredited('paid');

    const stats = sim.stats();
    expect(stats.totalCreates).toBe(8);
    expect(Math.max(...Object.values(stats.billedCredits))).toBeGreaterThan(2);
    // Nothing else spends on this account: before − after is exactly this batch's bill.
    expect(batch.credits).toEqual({ before: 10_000, after: 10_000 - stats.totalBilledCredits, used: stats.totalBilledCredits, estimated: stats.totalBilledCredits });

    const results = await csv('/v1/batches/paid/results.csv');
    expect(results).toHaveLength(8);
    for (const result of results) {
      expect(result.credits, result.row_key).toBe(String(stats.billedCredits[result.talk_id as string]));
      expect(result.credits_source, result.row_key).toBe('d-id');
    }
    expect(results.filter((result) => result.status === 'failed')).toHaveLength(4);

    const charged = await csv('/v1/batches/paid/charged-failures.csv');
    expect(charged.map((line) => line.talk_id).sort()).toEqual(failedAtSimulator(sim));
    expect(charged).toHaveLength(4);
    for (const line of charged) {
      const talk = sim.talk(line.talk_id as string) as { created_at: string; error: { kind: string; description: string } };
      expect(line).toMatchObject({
        created_at: talk.created_at,
        kind: talk.error.kind,
        description: talk.error.description,
        credits: String(stats.billedCredits[line.talk_id as string]),
        credits_before: '10000',
        credits_after: String(batch.credits.after),
        credits_source: 'd-id',
        request_sha256: receivedSha256(sim, line.talk_id as string),
      });
    }

    // The review page shows the batch's balance and each row's cost.
    const page = await readFile(`${config.outDir}/paid/index.html`, 'utf8');
    expect(page).toContain(`credits: <b>10000</b> before · <b>${batch.credits.after}</b> after · <b>${stats.totalBilledCredits}</b> used (D-ID's balance)`);
    const first = results.find((result) => result.row_key === 'r6');
    expect(page).toContain(`talk ${first?.talk_id}`);
    expect(page).toMatch(new RegExp(`talk ${first?.talk_id}[^<]* · ${first?.credits} credits[ <]`));

    // The gauge holds the last balance this process read (the one after the batch); the counter, what its rows cost.
    const metrics = await (await api('/metrics')).text();
    expect(metrics).toContain(`talkbatch_credits_remaining ${batch.credits.after}`);
    const used = [...metrics.matchAll(/^talkbatch_credits_used_total\{source="([^"]+)"\} (\d+)/gm)].map((match) => [match[1], Number(match[2])]);
    expect(Object.fromEntries(used)).toEqual({ 'd-id': stats.totalBilledCredits, estimate: 0 });

    // The CLI reads the same ledger.
    const env = { REDIS_URL: config.redisUrl, TALKBATCH_QUEUE: config.queueName, TALKBATCH_OUT_DIR: config.outDir, TALKBATCH_LOG_LEVEL: 'silent' };
    const status = await runCli(['status', 'paid'], env);
    expect(status.stdout).toContain(`credits: 10000 before, ${batch.credits.after} after, ${stats.totalBilledCredits} used (D-ID's balance); ${stats.totalBilledCredits} counted for its talks`);
    const report = await runCli(['report', 'paid', '--charged-failures'], env);
    expect(report.code, report.stderr).toBe(0);
    const path = `${config.outDir}/paid/charged-failures.csv`;
    expect(report.stdout).toBe(`${path}\n4 charged failures\n`);
    expect((parse<Record<string, string>>(await readFile(path, 'utf8'), { columns: true })).map((line) => line.talk_id).sort()).toEqual(failedAtSimulator(sim));

    // The next batch starts from where this one left the balance, and has nothing to claim.
    sim.setKnobs({ errorRate: 0, rejectRate: 0 });
    sim.resetStats();
    const next = await api('/v1/batches', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rows: rows.slice(0, 3), options: { batchId: 'clean', cache: false } }) });
    expect(next.status).toBe(201);
    const clean = await untilCredited('clean');
    expect(clean.credits).toEqual({ before: batch.credits.after, after: (batch.credits.after as number) - sim.stats().totalBilledCredits, used: sim.stats().totalBilledCredits, estimated: sim.stats().totalBilledCredits });
    const none = await api('/v1/batches/clean/charged-failures.csv');
    expect(await none.text()).toBe('talk_id,created_at,kind,description,details,request_sha256,credits,credits_before,credits_after,row_key,credits_source\n');
    expect(server.worker).toBeDefined();
  });

  it('falls back to the estimate, marked so, for a failed talk D-ID reports no duration for', async () => {
    const { sim } = await startRig({ errorRate: 0.25, rejectRate: 0.25, omitDurationOnFailure: true }, cyclingRandom([0.1, 0.4, 0.9, 0.9]));
    const rows = Array.from({ length: 4 }, (_, index) => ({ id: `s${index}`, image_url: IMAGE, script: SENTENCE }));
    await api('/v1/batches', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rows, options: { batchId: 'guess', cache: false } }) });
    const batch = await untilCredited('guess');
    const stats = sim.stats();
    const results = await csv('/v1/batches/guess/results.csv');
    const estimate = estimateTalkCredits(Math.max(1, Math.round((SENTENCE.length / 14) * 10) / 10), {});
    for (const result of results) {
      // A one-sentence script: the estimate and the bill agree (one credit).
      expect(result.credits).toBe(String(stats.billedCredits[result.talk_id as string]));
      expect(result.credits_source).toBe(result.status === 'failed' ? 'estimate' : 'd-id');
      if (result.status === 'failed') expect(result.credits).toBe(String(estimate));
    }
    expect(batch.credits.used).toBe(stats.totalBilledCredits);
    const charged = await csv('/v1/batches/guess/charged-failures.csv');
    expect(charged.map((line) => `${line.talk_id} ${line.credits_source}`).sort()).toEqual(failedAtSimulator(sim).map((id) => `${id} estimate`));
  });

  it('lists talks done at D-ID whose video could not be downloaded before the link died', async () => {
    harness = await startHarness({ expireBeforeDownloadRate: 1, credits: 500 }, { TALKBATCH_ATTEMPTS: 1 });
    service = new BatchService({ config: harness.config, handle: harness.handle, logger: silentLogger });
    await harness.startWorker({ onBatchFinished: service.finisher.onBatchFinished });
    await harness.enqueue('expired', [row(0), row(1)]);
    expect(await untilBatchFinished(harness.handle.batches, 'expired', 20_000)).toMatchObject({ done: 0, failed: 2 });
    await vi.waitFor(async () => expect((await harness?.handle.batches.creditLedger('expired'))?.after).not.toBeNull(), { timeout: 10_000, interval: 50 });

    const file = await service.chargedFailures('expired');
    const lines = parse<Record<string, string>>(await readFile(file.path, 'utf8'), { columns: true });
    const billed = harness.simulator.stats().billedCredits;
    expect(file.rows).toBe(2);
    expect(lines.map((line) => line.talk_id).sort()).toEqual(Object.keys(billed).sort());
    for (const line of lines) {
      expect((harness.simulator.talk(line.talk_id as string) as { status: string }).status).toBe('done');
      expect(line).toMatchObject({ kind: 'ResultNotDownloaded', credits: String(billed[line.talk_id as string]), credits_before: '500', credits_after: '498' });
      expect(JSON.parse(line.details as string)).toEqual({ reason: 'expired', status: 403 });
    }
    await expect(service.chargedFailures('no-such-batch')).rejects.toThrow('no batch "no-such-batch"');
  });
});
