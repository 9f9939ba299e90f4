import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFailed, vi } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { startPrivateRedis, type PrivateRedis } from '../../src/cli/local-redis.js';
import { enqueueRows } from '../../src/queue/producer.js';
import { openQueue, type QueueHandle } from '../../src/queue/talk-queue.js';
import { startSimulator, type Simulator } from '../../src/simulator/server.js';
import { startCreateGate, type CreateGate } from '../helpers/create-gate.js';
import { FIXTURE_SHA256, row, untilBatchFinished } from '../helpers/harness.js';
import { createNetnsLab, netnsSupport, type NetnsHost, type NetnsLab } from '../helpers/netns.js';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process.js';

/*
 * Three worker hosts, each a network namespace with its own address; Redis and D-ID (the simulator) on a
 * fourth (the root namespace, on the bridge). One host is cut off mid-batch while it holds rows: some
 * rendering (talk id checkpointed), one whose create D-ID has taken but whose answer it never saw. The
 * others must take its rows over once their BullMQ locks expire, adopt the talks already paid for, and
 * finish the batch; when the host comes back it must change nothing.
 */

const support = netnsSupport();
if (!support.ok) console.warn(`hosts-apart fault test skipped: ${support.reason}`);

const ROWS = 18;
const BATCH = 'apart';

interface LogLine {
  /** pino's epoch ms. */
  time?: number;
  msg?: string;
  jobId?: string;
  talkId?: string;
  err?: string;
  jobIds?: string[];
}

function lines(worker: WorkerProcess): LogLine[] {
  return worker
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => {
      try {
        return JSON.parse(line) as LogLine;
      } catch {
        return {};
      }
    });
}

function figure(name: string, values: Record<string, unknown>): void {
  console.log(`[figure] ${name}: ${JSON.stringify(values)}`);
}

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

describe.skipIf(!support.ok)('workers on separate hosts (network namespaces)', () => {
  let lab: NetnsLab | undefined;
  let redis: PrivateRedis | undefined;
  let simulator: Simulator | undefined;
  let gate: CreateGate | undefined;
  let handle: QueueHandle | undefined;
  let outDir: string | undefined;
  const workers: WorkerProcess[] = [];

  afterAll(async () => {
    // Links up first, so the killed workers' connections end instead of hanging the servers' close.
    for (const host of lab?.hosts ?? []) {
      try {
        host.restore();
      } catch {
        // Already gone.
      }
    }
    gate?.release();
    for (const worker of workers) worker.child.kill('SIGKILL');
    await Promise.all(workers.map((worker) => worker.exited));
    await handle?.close().catch(() => undefined);
    await gate?.close();
    await simulator?.close();
    await redis?.stop();
    lab?.close();
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it('a host cut off mid-batch: its rows are taken over after the lock expires and reconciled, nothing is paid twice, and when it comes back it changes nothing', async () => {
    lab = createNetnsLab(3);
    const { gateway } = lab;
    const [cutHost, ...otherHosts] = lab.hosts as [NetnsHost, NetnsHost, NetnsHost];
    redis = await startPrivateRedis({ bind: ['127.0.0.1', gateway] });
    simulator = await startSimulator({ host: gateway, knobs: { renderMs: 1_500, renderJitter: 0.3 } });
    // Only the host to be cut goes through the gate, so one of its creates can be paid but unanswered.
    gate = await startCreateGate(simulator.url, { host: gateway });
    outDir = await mkdtemp(join(tmpdir(), 'tb-hosts-apart-'));
    const env: Record<string, string> = {
      REDIS_URL: `redis://${gateway}:${redis.port}`,
      DID_API_URL: simulator.url,
      DID_API_KEY: simulator.apiKey,
      TALKBATCH_OUTBOUND_ALLOW: gateway,
      TALKBATCH_QUEUE: `apart-${Math.random().toString(36).slice(2, 8)}`,
      TALKBATCH_OUT_DIR: outDir,
      TALKBATCH_CONCURRENCY: '9',
      TALKBATCH_WORKER_CONCURRENCY: '3',
      TALKBATCH_POLL_INITIAL_MS: '150',
      TALKBATCH_POLL_MAX_MS: '400',
      // What a cut-off host costs: its rows wait this long (plus one stalled check) before another host takes them.
      TALKBATCH_LOCK_MS: '2000',
      TALKBATCH_STALLED_INTERVAL_MS: '1000',
      TALKBATCH_CREDIT_CHECK_MS: '2000',
      TALKBATCH_LOG_LEVEL: 'debug',
    };
    const config = loadConfig({ env: { ...env, REDIS_URL: redis.url }, dotenvPath: false });
    handle = await openQueue(config, redis.url);
    const cutWorker = spawnWorker({ ...env, DID_API_URL: gate.url }, { exec: cutHost.exec });
    workers.push(cutWorker, ...otherHosts.map((host) => spawnWorker(env, { exec: host.exec })));
    const others = workers.slice(1);
    const dumpLogs = (): void => {
      for (const [index, worker] of workers.entries()) {
        const file = join(tmpdir(), `tb-hosts-apart-worker-${index}.log`);
        writeFileSync(file, worker.output());
        console.log(`worker ${index} (${lab?.hosts[index]?.ns}, pid ${worker.child.pid}) log: ${file}`);
      }
    };
    onTestFailed(dumpLogs);
    await Promise.all(
      workers.map((worker) =>
        Promise.race([worker.ready, worker.exited.then((code) => Promise.reject(new Error(`a worker exited (${code}) before it started:\n${worker.output()}`)))]),
      ),
    );

    await handle.batches.create(BATCH, 'faults');
    await enqueueRows(handle, BATCH, Array.from({ length: ROWS }, (_, i) => row(i)));
    await vi.waitFor(async () => expect((await handle?.batches.counts(BATCH))?.done).toBeGreaterThanOrEqual(3), { timeout: 60_000, interval: 100 });

    // The cut host's talks D-ID is rendering now, by its own log of creates and the simulator's view of them;
    // only those just started, so none can finish (and be recorded by the cut host) before the cut lands.
    const renderingOnCutHost = (): Map<string, string> => {
      const found = new Map<string, string>();
      for (const line of lines(cutWorker)) {
        if (line.msg !== 'talk created' || !line.jobId || !line.talkId) continue;
        const talk = simulator?.talk(line.talkId) as { status?: string; created_at?: string } | undefined;
        if (talk && talk.status !== 'done' && Date.now() - Date.parse(talk.created_at ?? '') < 500) found.set(line.jobId, line.talkId);
      }
      return found;
    };
    gate.hold(1);
    let rendering = new Map<string, string>();
    await vi.waitFor(
      () => {
        rendering = renderingOnCutHost();
        expect(gate?.held().length).toBeGreaterThan(0);
        expect(rendering.size).toBeGreaterThan(0);
      },
      { timeout: 60_000, interval: 20 },
    );
    cutHost.cut();
    const cutAt = Date.now();
    const unanswered = gate.held();
    // D-ID answers now, into a link that is down: the cut host learns these talk ids only if it comes back.
    gate.release();
    const createsAtCut = simulator.stats().totalCreates;

    const counts = await untilBatchFinished(handle.batches, BATCH, 120_000, 100);
    const finishedAfterCutMs = Date.now() - cutAt;
    const stats = simulator.stats();
    expect(counts).toMatchObject({ total: ROWS, done: ROWS, failed: 0 });
    expect(stats.duplicateUserData).toEqual([]);
    expect(stats.totalCreates).toBe(ROWS);

    // The rows the cut host held were finished elsewhere, on the talks it had created.
    const rowKeyOf = async (jobId: string): Promise<string> => ((await handle?.queue.getJob(jobId))?.data.rowKey as string);
    const ledger = async (): Promise<Map<string, unknown>> => {
      const keys = Array.from({ length: ROWS }, (_, i) => row(i).rowKey);
      const entries = (await handle?.batches.finishedRows(BATCH, keys)) ?? [];
      return new Map(keys.map((key, index) => [key, entries[index]]));
    };
    const before = await ledger();
    // Takeover: from the cut until the last row the cut host held was done elsewhere (the ledger's finishedAt).
    const heldRowsDoneAfterCutMs =
      Math.max(...(await Promise.all([...rendering.keys(), ...unanswered].map(async (jobId) => (before.get(await rowKeyOf(jobId)) as { finishedAt: number }).finishedAt)))) - cutAt;
    for (const [jobId, talkId] of rendering) {
      expect((before.get(await rowKeyOf(jobId)) as { talkId?: string } | undefined)?.talkId, `row of job ${jobId} finished on the talk ${talkId} the cut host created`).toBe(talkId);
    }
    const othersLines = others.flatMap(lines);
    // user_data is the job id (no generation on a first try): the held creates' rows.
    for (const jobId of unanswered) {
      const adopted = othersLines.some((line) => line.msg === 'adopted talk created by an earlier try' && line.jobId === jobId);
      expect(adopted, `another host adopted the talk whose create answer the cut host never got (job ${jobId})`).toBe(true);
    }

    // Files: one per row, each the bytes the ledger recorded; the report is written once the finishing worker says so.
    await vi.waitFor(() => expect(others.some((worker) => lines(worker).some((line) => line.msg === 'batch finished'))).toBe(true), { timeout: 30_000, interval: 100 });
    const dir = join(outDir, BATCH);
    const snapshotFiles = async (): Promise<Map<string, string>> => {
      const out = new Map<string, string>();
      for (const name of (await readdir(dir)).sort()) {
        const info = await stat(join(dir, name));
        out.set(name, `${info.ino}:${info.mtimeMs}:${info.size}:${name.endsWith('.mp4') || name.startsWith('results.') ? await sha256Of(join(dir, name)) : ''}`);
      }
      return out;
    };
    const filesBefore = await snapshotFiles();
    const videos = [...filesBefore.keys()].filter((name) => name.endsWith('.mp4'));
    expect(videos).toHaveLength(ROWS);
    for (const [rowKey, entry] of before) {
      const finished = entry as { file: string; sha256: string };
      expect(await sha256Of(join(dir, finished.file)), rowKey).toBe(finished.sha256);
      expect(finished.sha256).toBe(FIXTURE_SHA256);
    }
    const countsBefore = await handle.batches.counts(BATCH);

    // The host comes back. Its stale rows must be refused, not finished a second time.
    const heldJobs = [...rendering.keys(), ...unanswered];
    cutHost.restore();
    const restoredAt = Date.now();
    // Each of its stale rows ends when BullMQ refuses to finish it: the lock token it holds is no longer the job's.
    const refused = (jobId: string): RegExp => new RegExp(`^(Missing lock|Lock mismatch|Missing key) for job ${jobId}\\b|^Job ${jobId} is not in the active state`);
    await vi.waitFor(
      () => {
        const after = lines(cutWorker).filter((line) => (line.time ?? 0) >= cutAt);
        for (const jobId of heldJobs) expect(after.some((line) => refused(jobId).test(line.err ?? '')), `the came-back host's try of job ${jobId} was refused`).toBe(true);
      },
      { timeout: 90_000, interval: 200 },
    );
    const refusedAfterMs = Date.now() - restoredAt;

    expect(await ledger()).toEqual(before);
    expect(await handle.batches.counts(BATCH)).toEqual(countsBefore);
    expect(await snapshotFiles()).toEqual(filesBefore);
    expect(simulator.stats().totalCreates).toBe(ROWS);
    expect(simulator.stats().duplicateUserData).toEqual([]);
    expect(cutWorker.child.exitCode).toBeNull();
    figure('hosts apart', { rows: ROWS, heldByCutHost: heldJobs.length, unanswered: unanswered.length, createsAtCut, finishedAfterCutMs, heldRowsDoneAfterCutMs, refusedAfterMs, lockMs: 2000 });
  });
});
