import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import type { BatchStore } from '../queue/batches.js';
import { safeCell } from './results.js';

export const CHARGED_FAILURES_FILE = 'charged-failures.csv';

/** D-ID's part first (what a refund claim names), then the credits, then talkbatch's row key and the credits' source. */
export const CHARGED_FAILURE_COLUMNS = [
  'talk_id', 'created_at', 'kind', 'description', 'details', 'request_sha256', 'credits', 'credits_before', 'credits_after', 'row_key', 'credits_source',
] as const;

export interface ChargedFailuresFile {
  path: string;
  /** Talks listed. */
  rows: number;
}

/**
 * Writes `<outDir>/<batchId>/charged-failures.csv`: every talk of the batch that was created (so paid) and then
 * ended `error` or `rejected` at D-ID, or was done there but never reached the disk, retried rows' earlier talks
 * included. credits_before/credits_after are the batch's D-ID balance around it (empty when unknown). Through a
 * temp file and a rename; a batch with no such talk gets the header alone.
 */
export async function writeChargedFailures(batches: Pick<BatchStore, 'allChargedTalks' | 'creditLedger'>, batchId: string, outDir: string): Promise<ChargedFailuresFile> {
  const [talks, ledger] = await Promise.all([batches.allChargedTalks(batchId), batches.creditLedger(batchId)]);
  const claims = talks.filter((talk) => talk.claim);
  const before = ledger.before?.remaining ?? null;
  const after = ledger.after?.remaining ?? null;
  const lines = claims.map((talk) =>
    [talk.talkId, talk.createdAt, talk.kind, talk.description, talk.details, talk.requestSha256, talk.credits, before, after, talk.rowKey, talk.creditsSource].map(safeCell),
  );
  const dir = join(outDir, batchId);
  await mkdir(dir, { recursive: true });
  const path = join(dir, CHARGED_FAILURES_FILE);
  const temp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(temp, stringify(lines, { header: true, columns: [...CHARGED_FAILURE_COLUMNS] }));
    await rename(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
  return { path, rows: claims.length };
}
