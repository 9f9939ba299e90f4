import { mkdtemp, open, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestError } from './issues.js';
import { RemoteSourceError, SOURCE_MAX_BYTES, SOURCE_TIMEOUT_MS, downloadTo, extensionFor, formatBytes, isUrlSource, redactUrl, redactUrlText, urlProblem } from './remote.js';
import { issueAt } from './source.js';
import type { ManifestSource, SourceOptions } from './types.js';

/*
 * The one place where a manifest source becomes a local file. Validation reads a manifest twice (every row is
 * checked before any is enqueued), and standard input can be read only once, while a URL should be fetched only once
 * (the sheet could change in between), so both are copied to a private temp file first; cleanup() deletes it.
 */

export const STDIN_SOURCE = '-';
export const STDIN_LABEL = 'stdin';

export interface LocalManifest {
  /** A file to read: the given path, or the temp copy of standard input or a download. */
  path: string;
  /** How issues name the source: the path, `stdin`, or the URL without credentials or secret query values. */
  label: string;
  /** Deletes the temp copy, if there is one. Safe to call twice. */
  cleanup(): Promise<void>;
}

/** How issues name a source before it is opened. */
export function sourceLabel(source: ManifestSource): string {
  if (source === STDIN_SOURCE) return STDIN_LABEL;
  return isUrlSource(source) ? redactUrlText(source) : source;
}

/** A private temp folder (mkdtemp makes it 0700); remove() deletes it and is safe to call twice. */
export async function tempFolder(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'talkbatch-manifest-'));
  let removed = false;
  return {
    dir,
    remove: async () => {
      if (removed) return;
      removed = true;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function copyStdin(input: NonNullable<SourceOptions['stdin']>, path: string, maxBytes: number): Promise<void> {
  const file = await open(path, 'w');
  try {
    let bytes = 0;
    for await (const chunk of input) {
      const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      bytes += data.byteLength;
      if (bytes > maxBytes) throw new ManifestError([issueAt(STDIN_LABEL, 0, `input is larger than ${formatBytes(maxBytes)}; save it to a file`)]);
      await file.write(data);
    }
  } finally {
    await file.close();
  }
}

/** A local file for `source` (a path, `-` or a URL); the caller must call cleanup(). Throws ManifestError. */
export async function localManifest(source: ManifestSource, options: SourceOptions = {}): Promise<LocalManifest> {
  const maxBytes = options.maxBytes ?? SOURCE_MAX_BYTES;
  if (source === STDIN_SOURCE) {
    const input = options.stdin ?? process.stdin;
    if (input.isTTY === true) {
      throw new ManifestError([issueAt(STDIN_LABEL, 0, '"-" reads the manifest from standard input, but nothing is piped in (e.g. cat people.csv | talkbatch validate -)')]);
    }
    const temp = await tempFolder();
    const path = join(temp.dir, 'stdin');
    try {
      await copyStdin(input, path, maxBytes);
    } catch (error) {
      await temp.remove();
      if (error instanceof ManifestError) throw error;
      throw new ManifestError([issueAt(STDIN_LABEL, 0, `cannot read standard input (${error instanceof Error ? error.message : String(error)})`)]);
    }
    return { path, label: STDIN_LABEL, cleanup: temp.remove };
  }

  if (!isUrlSource(source)) return { path: source, label: source, cleanup: async () => {} };

  let url: URL;
  try {
    url = new URL(source);
  } catch {
    throw new ManifestError([issueAt(redactUrlText(source), 0, 'not a valid URL')]);
  }
  const label = redactUrl(url);
  const problem = urlProblem(url);
  if (problem !== undefined) throw new ManifestError([issueAt(label, 0, problem)]);
  const temp = await tempFolder();
  try {
    const partial = join(temp.dir, 'download');
    const download = await downloadTo(url, partial, { timeoutMs: options.timeoutMs ?? SOURCE_TIMEOUT_MS, maxBytes, outboundAllow: options.outboundAllow ?? [] });
    // Named by what the server said it is, so format detection works as for a local file.
    const path = join(temp.dir, `manifest${extensionFor(download.contentType, download.finalUrl)}`);
    await rename(partial, path);
    return { path, label, cleanup: temp.remove };
  } catch (error) {
    await temp.remove();
    if (error instanceof RemoteSourceError) throw new ManifestError([issueAt(label, 0, error.message)]);
    throw error;
  }
}
