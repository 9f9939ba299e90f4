import { basename, join, resolve, sep } from 'node:path';
import { AppError } from '../shared/errors.js';

export class UnsafePathError extends AppError {
  readonly code = 'UNSAFE_PATH';
}

/**
 * Where a row's video goes: `<outDir>/<batchId>/<name>`. The manifest already refuses names with
 * folders, but the payload may come from any BullMQ client, so this checks again and never lets a
 * path leave the batch folder.
 */
export function outputPathFor(outDir: string, batchId: string, name: string): string {
  if (name !== basename(name) || name.startsWith('.') || name.includes('\\') || /[\0-\x1f]/.test(name)) {
    throw new UnsafePathError(`output name "${name}" is not a plain file name`);
  }
  const batchDir = batchDirFor(outDir, batchId);
  const path = resolve(batchDir, name);
  if (!path.startsWith(batchDir + sep)) throw new UnsafePathError(`output name "${name}" leaves the batch folder`);
  return path;
}

export function batchDirFor(outDir: string, batchId: string): string {
  if (batchId !== basename(batchId) || batchId.startsWith('.')) throw new UnsafePathError(`batch id "${batchId}" is not a plain folder name`);
  return join(resolve(outDir), batchId);
}
