import { open } from 'node:fs/promises';
import { outboundFetch, OutboundRefusedError } from '../net/outbound.js';

/*
 * Manifests at a URL (a Google Sheet published as CSV, a file on an intranet server). Fetched through outboundFetch:
 * only public addresses (or hosts the operator opened with TALKBATCH_OUTBOUND_ALLOW), each redirect hop checked
 * before it is followed (published Google Sheets always redirect once); the whole download has a deadline that fires
 * whatever the garbage collector does, and a size cap, and is written to a file the caller owns. Errors and labels never carry credentials or secret-looking query values.
 */

export const SOURCE_TIMEOUT_MS = 60_000;
export const SOURCE_MAX_BYTES = 50 * 1024 * 1024;

/** `52428800` -> `50 MB`, `1000` -> `1000 bytes`: for limits in messages. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${Math.round((bytes / 1024 / 1024) * 10) / 10} MB`;
  if (bytes >= 1024) return `${Math.round((bytes / 1024) * 10) / 10} KB`;
  return `${bytes} bytes`;
}

/** Thrown with a message fit for an issue about the URL (the caller names the URL). */
export class RemoteSourceError extends Error {}

/** `https://...`, `http://...`, or any other `scheme://` (refused later with a clear message, not read as a path). */
export function isUrlSource(source: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(source);
}

/* Query parameters that say which sheet or format a link asks for: shown. Any other value may be a token: hidden. */
const PLAIN_QUERY_KEYS = new Set(['gid', 'output', 'format', 'single', 'sheet', 'tab', 'range', 'tqx', 'exportformat', 'usp', 'headers', 'alt', 'dl', 'raw']);

/** The URL as messages may show it: no user or password, no fragment, query values other than PLAIN_QUERY_KEYS hidden. */
export function redactUrl(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  copy.hash = '';
  for (const key of new Set(copy.searchParams.keys())) {
    if (!PLAIN_QUERY_KEYS.has(key.toLowerCase())) copy.searchParams.set(key, 'REDACTED');
  }
  return copy.href;
}

/** A label for a source string that may not even parse as a URL. */
export function redactUrlText(text: string): string {
  try {
    return redactUrl(new URL(text));
  } catch {
    return text.replace(/\/\/[^/@]*@/, '//').replace(/[?#].*$/, '');
  }
}

function isLoopback(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** Why a URL may not be fetched, or undefined. Plain http only for this machine (local servers, tests). */
export function urlProblem(url: URL): string | undefined {
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:') return isLoopback(url) ? undefined : 'must use https:// (http:// only for localhost)';
  return `only https:// URLs can be read (got ${url.protocol})`;
}

const CONTENT_TYPE_FORMATS: ReadonlyArray<[RegExp, string]> = [
  [/^(?:text|application)\/(?:csv|x-csv|comma-separated-values)$/, '.csv'],
  [/^text\/tab-separated-values$/, '.tsv'],
  [/^application\/(?:x-)?(?:ndjson|jsonl|jsonlines|json-seq)$/, '.jsonl'],
  [/^application\/vnd\.openxmlformats-officedocument\.spreadsheetml\.sheet$/, '.xlsx'],
];

/**
 * The file extension the download should be saved under, so format detection works as for a local file: from the
 * content type when it is specific, else from the URL's path, else none (the first bytes decide). JSON is left to
 * sniffing on purpose: servers label JSONL as application/json too.
 */
export function extensionFor(contentType: string | undefined, url: URL): string {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  for (const [pattern, extension] of CONTENT_TYPE_FORMATS) if (pattern.test(type)) return extension;
  const fromPath = /\.(csv|tsv|txt|json|jsonl|ndjson|xlsx)$/i.exec(url.pathname)?.[1]?.toLowerCase();
  if (fromPath === undefined) return '';
  // A .json path served as JSON could still be JSONL; only a specific extension is trusted.
  return fromPath === 'json' ? '' : `.${fromPath}`;
}

function statusHint(status: number): string {
  if (status === 404) return ' (check the link; a Google Sheet must be published: File > Share > Publish to web)';
  if (status === 401 || status === 403) return ' (the link needs a login; publish the sheet, or use a link that works without one)';
  if (status === 429 || status >= 500) return ' (the server had a problem; try again later)';
  return '';
}

function failureText(error: unknown, timeoutMs: number): string {
  if (error instanceof RemoteSourceError) return error.message;
  if (error instanceof OutboundRefusedError) {
    return error.reason === 'non-public-address' ? `${error.message} (an operator can open it with TALKBATCH_OUTBOUND_ALLOW)` : error.message;
  }
  const name = (error as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError') return `download did not finish within ${timeoutMs < 10_000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)} s`}`;
  const cause = (error as { cause?: unknown } | null)?.cause;
  const code = (cause as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return `cannot download (${code})`;
  const message = cause instanceof Error ? cause.message : error instanceof Error ? error.message : String(error);
  return `cannot download (${message})`;
}

export interface Download {
  /** As the server sent it, for format detection. */
  contentType: string | undefined;
  /** Where the redirects ended. */
  finalUrl: URL;
  bytes: number;
}

/**
 * Downloads `url` into `destination` (created). Throws RemoteSourceError for anything that leaves no usable file:
 * a non-2xx status, an HTML page, too big, too slow, unreachable.
 */
export async function downloadTo(url: URL, destination: string, limits: { timeoutMs: number; maxBytes: number; outboundAllow?: readonly string[] }): Promise<Download> {
  const problem = urlProblem(url);
  if (problem !== undefined) throw new RemoteSourceError(problem);
  const headers: Record<string, string> = {
    accept: 'text/csv, application/json, application/x-ndjson, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet, text/plain;q=0.8, */*;q=0.5',
    'user-agent': 'talkbatch',
  };
  const target = new URL(url.href);
  if (target.username !== '' || target.password !== '') {
    // fetch refuses URLs with credentials in them; send them as Basic auth instead.
    const user = decodeURIComponent(target.username);
    const password = decodeURIComponent(target.password);
    headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    target.username = '';
    target.password = '';
  }
  const tooBig = `download is larger than ${formatBytes(limits.maxBytes)}`;
  const abort = new AbortController();
  const file = await open(destination, 'w');
  try {
    const { response, finalUrl } = await outboundFetch(target, { headers, timeoutMs: limits.timeoutMs, signal: abort.signal }, { allow: limits.outboundAllow ?? [] });
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw new RemoteSourceError(`download failed: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}${statusHint(response.status)}`);
    }
    const redirectProblem = urlProblem(finalUrl);
    if (redirectProblem !== undefined) {
      await response.body?.cancel().catch(() => undefined);
      throw new RemoteSourceError(`redirected to ${redactUrl(finalUrl)}, which ${redirectProblem}`);
    }
    const contentType = response.headers.get('content-type') ?? undefined;
    if (/^\s*text\/html\b/i.test(contentType ?? '')) {
      await response.body?.cancel().catch(() => undefined);
      throw new RemoteSourceError(
        'the link returned a web page (text/html), not a spreadsheet; for a Google Sheet use File > Share > Publish to web, pick CSV, and use that link',
      );
    }
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > limits.maxBytes) {
      await response.body?.cancel().catch(() => undefined);
      throw new RemoteSourceError(tooBig);
    }
    let bytes = 0;
    // undici types body chunks as any; a fetch body's chunks are bytes.
    const body: ReadableStream<Uint8Array> | null = response.body;
    if (body !== null) {
      for await (const chunk of body) {
        bytes += chunk.byteLength;
        if (bytes > limits.maxBytes) {
          abort.abort();
          throw new RemoteSourceError(tooBig);
        }
        await file.write(chunk);
      }
    }
    return { contentType, finalUrl, bytes };
  } catch (error) {
    throw error instanceof RemoteSourceError ? error : new RemoteSourceError(failureText(error, limits.timeoutMs));
  } finally {
    await file.close();
  }
}
