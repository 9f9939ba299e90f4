import { Agent, FormData, errors as undiciErrors, request, type Dispatcher } from 'undici';
import type { z } from 'zod';
import { sleep, withJitter } from '../shared/clock.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { DidApiError, DidConnectionError, DidProtocolError, DidServerError, DidTimeoutError } from './errors.js';
import { CreateTalkResponse, Credits, Talk, TalkList, UploadResponse, type CreateTalkRequest } from './schemas.js';
import { secretForms } from '../shared/secret-forms.js';

export interface DidClientOptions {
  apiKey: string;
  /** Defaults to D-ID's production API. */
  baseUrl?: string;
  /** Per request: connect, headers and body each. */
  timeoutMs?: number;
  /** Your own ElevenLabs key for IVC voices, sent as D-ID's `x-api-key-external`. */
  elevenLabsApiKey?: string;
  /** How often an idempotent GET is retried in-process on a connection error or 5xx. */
  getRetries?: number;
  dispatcher?: Dispatcher;
  logger?: Logger;
  /** Called once per HTTP answer (or failure, status 0): feeds metrics without this module knowing about them. */
  onResponse?: (info: { method: string; route: string; status: number; durationMs: number }) => void;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface FindTalkOptions extends RequestOptions {
  /** How many of the newest talks to look through at most. */
  window: number;
  /** Stop paging once talks are older than this (ms since epoch); they cannot be ours. */
  notBefore?: number;
}

/**
 * The only module that speaks HTTP to D-ID. POST /talks is never retried here: every create is paid,
 * so what to do after an ambiguous failure is the processor's decision (it reconciles by user_data).
 */
export class DidClient {
  readonly baseUrl: string;
  readonly #authorization: string;
  readonly #externalKeys: string | undefined;
  readonly #timeoutMs: number;
  readonly #getRetries: number;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #logger: Logger;
  readonly #secrets: string[];
  readonly #onResponse: DidClientOptions['onResponse'];

  constructor(options: DidClientOptions) {
    if (!options.apiKey) throw new TypeError('DidClient needs an API key');
    this.baseUrl = (options.baseUrl ?? 'https://api.d-id.com').replace(/\/+$/, '');
    // D-ID documents sending the key as-is after "Basic" (it is already `base64(email):secret`).
    this.#authorization = `Basic ${options.apiKey}`;
    this.#externalKeys = options.elevenLabsApiKey ? JSON.stringify({ elevenlabs: options.elevenLabsApiKey }) : undefined;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#getRetries = options.getRetries ?? 2;
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher = options.dispatcher ?? new Agent({ keepAliveTimeout: 10_000, connections: 128 });
    this.#logger = options.logger ?? silentLogger;
    // Every form an upstream might echo (base64, each half of user:secret, URL-encoded), longest first.
    this.#secrets = [...new Set([options.apiKey, options.elevenLabsApiKey].filter((s): s is string => Boolean(s && s.length >= 4)).flatMap(secretForms))].sort((a, b) => b.length - a.length);
    this.#onResponse = options.onResponse;
  }

  createTalk(body: CreateTalkRequest, options: RequestOptions = {}): Promise<CreateTalkResponse> {
    return this.#send('POST', '/talks', '/talks', CreateTalkResponse, { body, retries: 0, ...options });
  }

  /**
   * POST /images or POST /audios (multipart): D-ID keeps the file 24-48 h and answers a URL that talks accept.
   * Not retried here: the worker decides (an upload is free, but a retry after a lost answer uploads twice).
   */
  upload(kind: 'image' | 'audio', file: { bytes: Uint8Array; name: string; type: string }, options: RequestOptions = {}): Promise<UploadResponse> {
    const form = new FormData();
    form.set(kind, new Blob([file.bytes], { type: file.type }), file.name);
    const path = kind === 'image' ? '/images' : '/audios';
    return this.#send('POST', path, path, UploadResponse, { form, retries: 0, ...options });
  }

  getTalk(id: string, options: RequestOptions = {}): Promise<Talk> {
    return this.#send('GET', `/talks/${encodeURIComponent(id)}`, '/talks/:id', Talk, options);
  }

  listTalks(query: { limit?: number; token?: string } = {}, options: RequestOptions = {}): Promise<TalkList> {
    const params = new URLSearchParams();
    if (query.limit !== undefined) params.set('limit', String(query.limit));
    if (query.token !== undefined) params.set('token', query.token);
    const qs = params.size > 0 ? `?${params.toString()}` : '';
    return this.#send('GET', `/talks${qs}`, '/talks', TalkList, options);
  }

  deleteTalk(id: string, options: RequestOptions = {}): Promise<Talk> {
    return this.#send('DELETE', `/talks/${encodeURIComponent(id)}`, '/talks/:id', Talk, { retries: 0, ...options });
  }

  getCredits(options: RequestOptions = {}): Promise<Credits> {
    return this.#send('GET', '/credits', '/credits', Credits, options);
  }

  /**
   * Looks through the newest talks (newest first, bounded) for one carrying `userData`.
   * D-ID has no idempotency key, so this is how a create whose answer was lost is found again.
   */
  async findTalkByUserData(userData: string, options: FindTalkOptions): Promise<Talk | undefined> {
    let token: string | undefined;
    let seen = 0;
    do {
      const page = await this.listTalks({ limit: 100, ...(token ? { token } : {}) }, options);
      for (const talk of page.talks) {
        if (talk.user_data === userData) return talk;
        seen += 1;
        if (options.notBefore !== undefined && talk.created_at && parseDidTime(talk.created_at) < options.notBefore) return undefined;
      }
      token = page.token;
    } while (token && seen < options.window);
    return undefined;
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  /** Removes secrets from any text that might reach a log or a report. */
  redact(text: string): string {
    return this.#secrets.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
  }

  async #send<T extends z.ZodType>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    route: string,
    schema: T,
    options: RequestOptions & { body?: unknown; form?: FormData; retries?: number },
  ): Promise<z.infer<T>> {
    const retries = options.retries ?? (method === 'GET' ? this.#getRetries : 0);
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.#sendOnce(method, path, route, schema, options);
      } catch (error) {
        const retryable = error instanceof DidConnectionError || error instanceof DidServerError;
        if (!retryable || attempt >= retries || options.signal?.aborted) throw error;
        const delay = error instanceof DidServerError && error.retryAfterMs !== undefined ? Math.min(error.retryAfterMs, 60_000) : withJitter(250 * 2 ** attempt);
        this.#logger.debug({ method, route, attempt: attempt + 1, delay, err: (error as Error).message }, 'retrying D-ID GET');
        await sleep(delay, options.signal);
      }
    }
  }

  async #sendOnce<T extends z.ZodType>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    route: string,
    schema: T,
    options: RequestOptions & { body?: unknown; form?: FormData },
  ): Promise<z.infer<T>> {
    const headers: Record<string, string> = { authorization: this.#authorization, accept: 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (this.#externalKeys && method === 'POST') headers['x-api-key-external'] = this.#externalKeys;
    const started = performance.now();
    let status = 0;
    try {
      const response = await request(`${this.baseUrl}${path}`, {
        method,
        headers,
        dispatcher: this.#dispatcher,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
        ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
        ...(options.form !== undefined ? { body: options.form } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      status = response.statusCode;
      const text = await response.body.text();
      if (status < 200 || status >= 300) {
        throw DidApiError.fromResponse(status, this.redact(text), response.headers);
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new DidProtocolError(`D-ID ${method} ${route} answered ${status} with a body that is not JSON`);
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        throw new DidProtocolError(`D-ID ${method} ${route} answered ${status} with an unexpected body: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
      }
      return parsed.data;
    } catch (error) {
      throw this.#normalise(error, method, route, options.signal);
    } finally {
      this.#onResponse?.({ method, route, status, durationMs: performance.now() - started });
    }
  }

  #normalise(error: unknown, method: string, route: string, signal: AbortSignal | undefined): unknown {
    if (error instanceof DidApiError || error instanceof DidProtocolError || error instanceof DidConnectionError) return error;
    if (signal?.aborted) return signal.reason ?? error;
    const what = `${method} ${route}`;
    if (
      error instanceof undiciErrors.HeadersTimeoutError ||
      error instanceof undiciErrors.BodyTimeoutError ||
      error instanceof undiciErrors.ConnectTimeoutError
    ) {
      return new DidTimeoutError(`D-ID ${what} timed out after ${this.#timeoutMs} ms`, { cause: error });
    }
    const message = error instanceof Error ? this.redact(error.message) : String(error);
    const code = (error as { code?: string } | null)?.code;
    return new DidConnectionError(`D-ID ${what} failed: ${code ? `${code} ` : ''}${message}`, { cause: error });
  }
}

/** D-ID sometimes omits the zone (`2023-03-22T16:39:13.633`); such times are UTC. */
export function parseDidTime(value: string): number {
  const hasZone = /(Z|[+-]\d\d:?\d\d)$/i.test(value);
  return Date.parse(hasZone ? value : `${value}Z`);
}
