import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CreateTalkValidator, findPackageFixture, type TalkRequestBody } from './did-document.js';
import { DEFAULT_KNOBS, InvalidKnobsError, knobsToJson, mergeKnobs, type SimulatorKnobs } from './knobs.js';
import { planVideoResponse, s3ErrorXml } from './media.js';
import { PersonalisedVideos } from './personalised-video.js';
import { UrlSigner } from './presign.js';
import { RateLimiter } from './rate-limiter.js';
import {
  SIMULATED_OWNER,
  TalkStore,
  billedCredits,
  describeTalk,
  finishedAtMs,
  isRendering,
  statusAt,
  talkDurationSeconds,
  type SimulatedTalk,
  type TalkFailure,
  type TalkOutcome,
} from './talks.js';
import { WebhookDispatcher } from './webhooks.js';

/*
 * A D-ID look-alike for the demo, the tests and dry runs. On the wire it answers like api.d-id.com
 * (D-ID's published schema is fixtures/did/openapi-talks.json): POST/GET/DELETE /talks, GET /talks (token paging),
 * GET /credits, presigned-looking result URLs under /media/, and webhooks. Knobs inject the failures
 * D-ID and its API gateway are known to produce.
 *
 * Test-only admin endpoints (no auth; not counted in stats), so tests in another process can steer it:
 *   GET  /__sim/stats        SimulatorStats as JSON
 *   POST /__sim/stats/reset  resetStats()
 *   GET  /__sim/knobs        the knobs as JSON (Infinity as "Infinity")
 *   POST /__sim/knobs        JSON partial knobs (Infinity as null or "Infinity"); 400 when invalid; answers the new knobs
 */

export { DEFAULT_KNOBS, InvalidKnobsError, type SimulatorKnobs } from './knobs.js';

export interface SimulatorOptions {
  /** Default 0: any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Accepted API keys (D-ID's form is `user:secret`); default ['sim-user:sim-secret']. */
  apiKeys?: string[];
  knobs?: Partial<SimulatorKnobs>;
  /** Default fixtures/media/talk.mp4 of this package. */
  videoPath?: string;
  /** Give each talk a video of its own (its script drawn on the frames) when ffmpeg is there; default off. */
  personalisedVideos?: boolean;
  /** Source of every random decision (failures, jitter); inject a seeded one for reproducible runs. */
  random?: () => number;
  logger?: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

export interface SimulatorStats {
  /** Creates per user_data; talks without user_data count under "". */
  createsByUserData: Record<string, number>;
  /** user_data values created more than once, i.e. talks paid for twice ("" is not a value, so never listed). */
  duplicateUserData: string[];
  totalCreates: number;
  /** API and media requests; /__sim/ requests are not counted. */
  totalRequests: number;
  /** Responses per HTTP status ("201", "429", ...), API and media. */
  responsesByStatus: Record<string, number>;
  maxConcurrentRendersSeen: number;
  rendersInFlight: number;
  /** Media GETs that started sending the video (including truncated ones). */
  downloads: number;
  /** The most talks rendering at once while a video download was in progress. */
  maxRendersDuringDownloads: number;
  /** Webhooks the receiver answered 2xx. */
  webhooksSent: number;
  /** Webhook attempts that failed (each retry counts). */
  webhookFailures: number;
  /** Files accepted by POST /images and POST /audios. */
  uploads: number;
  /**
   * Credits charged per talk id (talks.ts billedCredits on the talk's duration, charged at the create; 0 for a talk
   * ending error/rejected while the billFailedTalks knob is off). GET /credits' remaining went down by each.
   */
  billedCredits: Record<string, number>;
  totalBilledCredits: number;
}

export interface Simulator {
  /** e.g. http://127.0.0.1:PORT, no trailing slash. */
  url: string;
  /** The first accepted key. */
  apiKey: string;
  setKnobs(knobs: Partial<SimulatorKnobs>): void;
  knobs(): SimulatorKnobs;
  stats(): SimulatorStats;
  /** The talk as GET /talks/{id} would answer now, or undefined when there is none. */
  talk(id: string): object | undefined;
  /** The POST /talks body exactly as received (before D-ID's coercion), or undefined when there is no such talk. */
  createRequest(id: string): unknown;
  resetStats(): void;
  close(): Promise<void>;
}

const DEFAULT_API_KEY = 'sim-user:sim-secret';
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_LIST_LIMIT = 100;
/** D-ID's upload limits: images 10 MB (FAQ), audio 6 MB (POST /audios). */
const UPLOAD_LIMITS = { image: 10 * 1024 * 1024, audio: 6 * 1024 * 1024 } as const;
const MULTIPART_OVERHEAD = 64 * 1024;
/** D-ID's text limit without SSML tags (the published input description). */
const MAX_SPOKEN_CHARS = 10_000;
/** Reported by GET /credits when credits are unlimited, since JSON has no Infinity. */
const UNLIMITED_CREDITS_REPORTED = 1_000_000;
const TALK_ID_LENGTH = 21;
const CREDITS_VALID_FOR_MS = 30 * 24 * 60 * 60 * 1000;
/** Longest a download waits for a talk's personalised video before it gets the fixture. */
const PERSONALISED_WAIT_MS = 15_000;
const noopLogger = { info: (): void => {}, warn: (): void => {} };

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const video = await readFile(options.videoPath ?? findPackageFixture('media', 'talk.mp4'));
  const apiKeys = options.apiKeys ?? [DEFAULT_API_KEY];
  const firstKey = apiKeys[0];
  if (firstKey === undefined) throw new Error('startSimulator: apiKeys must hold at least one key');
  const simulator = new DidSimulator({
    apiKeys,
    knobs: mergeKnobs({ ...DEFAULT_KNOBS }, options.knobs ?? {}),
    video,
    ...(options.personalisedVideos ? { personalised: new PersonalisedVideos() } : {}),
    random: options.random ?? Math.random,
    logger: options.logger ?? noopLogger,
  });
  const url = await simulator.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  return {
    url,
    apiKey: firstKey,
    setKnobs: (knobs) => simulator.setKnobs(knobs),
    knobs: () => ({ ...simulator.knobs }),
    stats: () => simulator.stats(),
    talk: (id) => simulator.talkView(id),
    createRequest: (id) => simulator.createRequest(id),
    resetStats: () => simulator.resetStats(),
    close: () => simulator.close(),
  };
}

interface DidSimulatorOptions {
  apiKeys: readonly string[];
  knobs: SimulatorKnobs;
  video: Buffer;
  personalised?: PersonalisedVideos;
  random: () => number;
  logger: NonNullable<SimulatorOptions['logger']>;
}

/** One request and its response; `counted` is false for /__sim/ traffic so that steering does not skew stats. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  counted: boolean;
}

type Authentication = { outcome: 'accepted'; key: string } | { outcome: 'unauthenticated' } | { outcome: 'malformed' };

class DidSimulator {
  knobs: SimulatorKnobs;
  readonly #apiKeys: readonly string[];
  readonly #video: Buffer;
  readonly #videoEtag: string;
  readonly #personalised: PersonalisedVideos | undefined;
  readonly #random: () => number;
  readonly #logger: DidSimulatorOptions['logger'];
  readonly #talks = new TalkStore();
  readonly #validator = new CreateTalkValidator();
  readonly #signer = new UrlSigner();
  readonly #rateLimiter = new RateLimiter();
  readonly #webhooks: WebhookDispatcher;
  readonly #server: Server;
  readonly #startedAtMs = Date.now();
  #url = '';
  #closing: Promise<void> | undefined;
  /** Credits spent since the credits knob was last set, so GET /credits can report a total. */
  #creditsSpent = 0;
  #counters = emptyCounters();
  /** Video downloads between their request and their answer (downloadDelayMs). */
  #downloadsInProgress = 0;

  constructor(options: DidSimulatorOptions) {
    this.knobs = options.knobs;
    this.#apiKeys = options.apiKeys;
    this.#video = options.video;
    this.#videoEtag = `"${createHash('md5').update(options.video).digest('hex')}"`;
    this.#personalised = options.personalised;
    this.#random = options.random;
    this.#logger = options.logger;
    this.#webhooks = new WebhookDispatcher({
      logger: options.logger,
      onDelivered: () => this.#counters.webhooksSent++,
      onFailedAttempt: () => this.#counters.webhookFailures++,
    });
    this.#server = createServer((req, res) => void this.#dispatch(req, res));
  }

  async listen(port: number, host: string): Promise<string> {
    await new Promise<void>((resolveListen, rejectListen) => {
      this.#server.once('error', rejectListen);
      this.#server.listen(port, host, () => {
        this.#server.off('error', rejectListen);
        resolveListen();
      });
    });
    const address = this.#server.address() as AddressInfo;
    this.#url = `http://${urlHost(host)}:${address.port}`;
    this.#logger.info({ url: this.#url }, 'simulator: listening');
    return this.#url;
  }

  /** Takes knobs from code or from JSON (validated either way). */
  setKnobs(patch: unknown): void {
    const next = mergeKnobs(this.knobs, patch);
    if (next.credits !== this.knobs.credits) this.#creditsSpent = 0;
    this.knobs = next;
  }

  stats(): SimulatorStats {
    const { createsByUserData, responsesByStatus, billedCredits: billed, ...totals } = this.#counters;
    const duplicateUserData = [...createsByUserData].filter(([userData, creates]) => userData !== '' && creates > 1).map(([userData]) => userData);
    return {
      ...totals,
      createsByUserData: Object.fromEntries(createsByUserData),
      duplicateUserData,
      responsesByStatus: Object.fromEntries(responsesByStatus),
      billedCredits: Object.fromEntries(billed),
      rendersInFlight: this.#talks.renderingCount(Date.now()),
    };
  }

  resetStats(): void {
    this.#counters = emptyCounters();
    this.#counters.maxConcurrentRendersSeen = this.#talks.renderingCount(Date.now());
  }

  talkView(id: string, baseUrl = this.#url): Record<string, unknown> | undefined {
    const talk = this.#talks.get(id);
    return talk && this.#describe(talk, baseUrl);
  }

  createRequest(id: string): unknown {
    return structuredClone(this.#talks.get(id)?.received);
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolveClose) => {
      this.#webhooks.close();
      void this.#personalised?.close();
      this.#server.close(() => resolveClose());
      // close() alone waits for keep-alive sockets to go idle and time out.
      this.#server.closeAllConnections();
    });
    return this.#closing;
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const base = 'http://simulator.invalid';
    const url = URL.canParse(req.url ?? '/', base) ? new URL(req.url ?? '/', base) : new URL('/', base);
    const exchange: Exchange = { req, res, url, counted: !url.pathname.startsWith('/__sim/') };
    if (exchange.counted) this.#counters.totalRequests++;
    try {
      await this.#route(exchange);
    } catch (error) {
      this.#logger.warn({ err: error, method: req.method, path: url.pathname }, 'simulator: request handler failed');
      if (res.headersSent) res.destroy();
      else this.#sendJson(exchange, 500, { kind: 'InternalServerError', description: `simulator failure: ${errorMessage(error)}` });
    }
  }

  async #route(exchange: Exchange): Promise<void> {
    const method = exchange.req.method ?? 'GET';
    const path = exchange.url.pathname.replace(/\/+$/, '') || '/';
    const talkId = decodeSegment(/^\/talks\/([^/]+)$/.exec(path)?.[1]);
    const mediaFile = decodeSegment(/^\/media\/([^/]+)$/.exec(path)?.[1]);

    if (path.startsWith('/__sim/')) return this.#routeAdmin(exchange, method, path);
    if (mediaFile !== undefined && (method === 'GET' || method === 'HEAD')) {
      // A talk's own video still being made (personalised-video.ts) is waited for, like D-ID's upload to S3.
      await this.#personalised?.ready(mediaFile.replace(/\.mp4$/, ''), PERSONALISED_WAIT_MS);
      if (method === 'HEAD') {
        this.#serveMedia(exchange, mediaFile, true);
        return;
      }
      this.#downloadsInProgress++;
      try {
        this.#noteRendersDuringDownloads(Date.now());
        if (this.knobs.downloadDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.knobs.downloadDelayMs));
        this.#serveMedia(exchange, mediaFile, false);
      } finally {
        this.#downloadsInProgress--;
      }
      return;
    }
    if (path === '/talks' && method === 'POST') return this.#api(exchange, () => this.#createTalk(exchange));
    if (path === '/talks' && method === 'GET') return this.#api(exchange, () => this.#listTalks(exchange));
    if (talkId !== undefined && method === 'GET') return this.#api(exchange, () => this.#getTalk(exchange, talkId));
    if (talkId !== undefined && method === 'DELETE') return this.#api(exchange, () => this.#deleteTalk(exchange, talkId));
    if (path === '/credits' && method === 'GET') return this.#api(exchange, () => this.#getCredits(exchange));
    if (path === '/images' && method === 'POST') return this.#api(exchange, () => this.#upload(exchange, 'image'));
    if (path === '/audios' && method === 'POST') return this.#api(exchange, () => this.#upload(exchange, 'audio'));
    this.#sendJson(exchange, 404, { kind: 'NotFoundError', description: `no route for ${method} ${path}` });
  }

  /** The checks every D-ID API call passes through, in D-ID's order: auth, rate limit, then (injected) server failure. */
  async #api(exchange: Exchange, handler: () => Promise<void> | void): Promise<void> {
    const authentication = this.#authenticate(exchange.req.headers.authorization);
    if (authentication.outcome === 'malformed') {
      // D-ID sits behind AWS API Gateway, which reads a header it cannot parse as a SigV4 attempt.
      const hash = createHash('sha256').update(exchange.req.headers.authorization ?? '').digest('base64');
      this.#sendJson(exchange, 403, { message: `Invalid key=value pair (missing equal-sign) in Authorization header (hashed with SHA-256 and encoded with Base64): '${hash}'.` });
      return;
    }
    if (authentication.outcome === 'unauthenticated') {
      this.#sendJson(exchange, 401, { kind: 'AuthorizationError', description: 'user unauthenticated' });
      return;
    }
    if (!this.#rateLimiter.tryTake(authentication.key, this.knobs.rateLimitPerSecond, Date.now()) || this.#happens(this.knobs.rateLimitRate)) {
      // D-ID's 429 body is undocumented; per-key throttling is the API gateway's, so answer as it does.
      this.#sendJson(exchange, 429, { message: 'Too Many Requests' }, this.#retryAfterHeader());
      return;
    }
    if (this.#happens(this.knobs.failureRate5xx)) {
      this.#sendJson(exchange, 500, { kind: 'InternalServerError', description: 'Internal Server Error' });
      return;
    }
    await handler();
  }

  /** D-ID documents `Basic <key>` with the key as-is; community clients send `Basic base64(key)`; both work. */
  #authenticate(header: string | undefined): Authentication {
    if (header === undefined || header.trim() === '') return { outcome: 'unauthenticated' };
    const credential = /^(?:Basic|Bearer) +(\S.*)$/i.exec(header.trim())?.[1]?.trim();
    if (credential === undefined) return { outcome: 'malformed' };
    const unpadded = credential.replace(/=+$/, '');
    const key = this.#apiKeys.find((candidate) => credential === candidate || unpadded === Buffer.from(candidate).toString('base64').replace(/=+$/, ''));
    return key === undefined ? { outcome: 'unauthenticated' } : { outcome: 'accepted', key };
  }

  async #createTalk(exchange: Exchange): Promise<void> {
    const body = await readBody(exchange.req, MAX_BODY_BYTES);
    if (body === 'too-large') {
      this.#sendJson(exchange, 413, { kind: 'PayloadTooLargeError', description: `request body is larger than ${MAX_BODY_BYTES} bytes` });
      return;
    }
    if (!isJsonContentType(exchange.req.headers['content-type'])) {
      // Without the JSON content type D-ID does not parse the body, so it finds no script.
      this.#sendJson(exchange, 400, validationError({ 'body.script': { message: "'script' is required" } }));
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch (error) {
      this.#sendJson(exchange, 400, { kind: 'BadRequestError', description: `invalid JSON body: ${errorMessage(error)}` });
      return;
    }
    const checked = this.#validator.check(json, { allowHttpWebhooks: this.knobs.allowHttpWebhooks });
    if (!checked.ok) {
      this.#sendJson(exchange, 400, validationError(checked.details));
      return;
    }
    const script = checked.body.script;
    if (script.type === 'text' && script.input.replace(/<[^>]*>/g, '').length > MAX_SPOKEN_CHARS) {
      // The published schema allows 40,000 characters; its description adds "10K excluding SSML tags".
      this.#sendJson(exchange, 400, validationError({ 'body.script.input': { message: `must be at most ${MAX_SPOKEN_CHARS} characters excluding SSML tags` } }));
      return;
    }
    const gatedFeature = this.knobs.plan === 'lite' ? planGatedFeature(checked.body) : undefined;
    if (gatedFeature !== undefined) {
      this.#sendJson(exchange, 403, { kind: 'PermissionError', description: `user has no permission for ${gatedFeature}` });
      return;
    }
    // The whole video's credits must be there at the create, as D-ID refuses a talk the balance cannot pay for.
    const cost = billedCredits(talkDurationSeconds(checked.body));
    if (this.knobs.credits < cost) {
      this.#sendJson(exchange, 402, { kind: 'InsufficientCreditsError', description: 'not enough credits' });
      return;
    }
    if (this.#happens(this.knobs.moderationRate)) {
      const kind = script.type === 'audio' ? 'AudioModerationError' : 'TextModerationError';
      this.#sendJson(exchange, 451, { kind, description: 'Automatic content moderation - contact support if you would like to submit for manual review' });
      return;
    }
    const nowMs = Date.now();
    if (this.#talks.renderingCount(nowMs) >= this.knobs.maxConcurrentRenders) {
      // D-ID's 429 body is undocumented; this D-ID-style body is a guess.
      this.#sendJson(exchange, 429, { kind: 'TooManyRequestsError', description: 'too many talks in process, try again later' }, this.#retryAfterHeader());
      return;
    }

    const sourceFailure = sourceFailureOf(checked.body.source_url, this.knobs.nonImageSources);
    const talk = this.#talks.add({
      id: `tlk_${randomBytes(TALK_ID_LENGTH).toString('base64url').slice(0, TALK_ID_LENGTH)}`,
      createdAtMs: nowMs,
      renderMs: this.#jitteredRenderMs(),
      outcome: sourceFailure ? 'error' : this.#drawOutcome(),
      ...(sourceFailure ? { failure: sourceFailure } : {}),
      request: checked.body,
      received: json,
    });
    this.#recordCreate(talk, nowMs, talk.outcome === 'done' || this.knobs.billFailedTalks ? cost : 0);
    if (talk.outcome === 'done') this.#personalised?.prepare(talk.id, talk.request, this.#video);
    if (talk.request.webhook !== undefined) {
      this.#webhooks.schedule(finishedAtMs(talk) + this.knobs.webhookDelayMs, talk.request.webhook, () => this.talkView(talk.id));
    }

    if (this.#happens(this.knobs.gateway504AfterCreateRate)) {
      // The gateway gave up waiting, but the talk exists and was paid for: clients must reconcile, not resubmit.
      this.#sendJson(exchange, 504, { message: 'Endpoint request timed out' });
      return;
    }
    this.#sendJson(exchange, 201, { id: talk.id, object: 'talk', created_by: SIMULATED_OWNER, created_at: new Date(nowMs).toISOString(), status: 'created' });
  }

  /** POST /images and POST /audios: multipart with one file field (`image` / `audio`), answered as the document says. */
  async #upload(exchange: Exchange, kind: 'image' | 'audio'): Promise<void> {
    const limit = UPLOAD_LIMITS[kind];
    const body = await readBody(exchange.req, limit + MULTIPART_OVERHEAD);
    const contentType = exchange.req.headers['content-type'] ?? '';
    if (body === 'too-large') {
      this.#sendJson(exchange, 400, { kind: 'InvalidFileSizeError', description: `file is larger than ${limit} bytes` });
      return;
    }
    let file: Blob | undefined;
    try {
      // eslint-disable-next-line @typescript-eslint/no-deprecated -- deprecated for servers facing hostile uploads; this test double reads one capped body.
      const form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
      const field = form.get(kind);
      file = typeof field === 'object' && field !== null ? field : undefined;
    } catch {
      file = undefined;
    }
    if (file === undefined) {
      this.#sendJson(exchange, 400, { kind: 'BadRequestError', description: `multipart/form-data with a "${kind}" file field is required` });
      return;
    }
    const bytes = Buffer.from(await file.arrayBuffer());
    if (bytes.length > limit) {
      this.#sendJson(exchange, 400, { kind: 'InvalidFileSizeError', description: `file is larger than ${limit} bytes` });
      return;
    }
    const imageType = kind === 'image' ? imageTypeOf(bytes) : undefined;
    if (kind === 'image' && imageType === undefined) {
      this.#sendJson(exchange, 415, { kind: 'UnsupportedMimeTypeError', description: 'The provided mime type is not supported', details: { received: file.type, supported: ['image/jpeg', 'image/png'] } });
      return;
    }
    if (kind === 'audio' && !/^(audio|video)\//.test(file.type)) {
      this.#sendJson(exchange, 415, { kind: 'UnsupportedMimeTypeError', description: 'The provided mime type is not supported', details: { received: file.type, supported: ['audio/*', 'video/*'] } });
      return;
    }
    this.#counters.uploads++;
    const id = randomBytes(TALK_ID_LENGTH).toString('base64url').slice(0, TALK_ID_LENGTH);
    const owner = encodeURIComponent(SIMULATED_OWNER);
    // D-ID stores audio as 16 kHz WAV; images keep their type. Both URLs match the talk schema's patterns.
    const url = kind === 'image' ? `s3://d-id-images-prod/${owner}/${id}/image.${imageType}` : `s3://d-id-audios-prod/${owner}/${id}/audio.wav`;
    this.#sendJson(exchange, 201, kind === 'image' ? { id, url } : { id, url, duration: 2 });
  }

  #recordCreate(talk: SimulatedTalk, nowMs: number, credits: number): void {
    if (this.knobs.credits !== Infinity) this.knobs = { ...this.knobs, credits: this.knobs.credits - credits };
    this.#creditsSpent += credits;
    const counters = this.#counters;
    counters.billedCredits.set(talk.id, credits);
    counters.totalBilledCredits += credits;
    counters.totalCreates++;
    const userData = talk.request.user_data ?? '';
    counters.createsByUserData.set(userData, (counters.createsByUserData.get(userData) ?? 0) + 1);
    // The number of talks in flight only grows at a create, so its peak is always seen here.
    counters.maxConcurrentRendersSeen = Math.max(counters.maxConcurrentRendersSeen, this.#talks.renderingCount(nowMs));
    this.#noteRendersDuringDownloads(nowMs);
  }

  /** Called when a download starts and at each create: the only moments the figure can grow. */
  #noteRendersDuringDownloads(nowMs: number): void {
    if (this.#downloadsInProgress === 0) return;
    this.#counters.maxRendersDuringDownloads = Math.max(this.#counters.maxRendersDuringDownloads, this.#talks.renderingCount(nowMs));
  }

  #getTalk(exchange: Exchange, id: string): void {
    const view = this.talkView(id, this.#publicBaseUrl(exchange));
    if (view === undefined) this.#sendNotFound(exchange);
    else this.#sendJson(exchange, 200, view);
  }

  #listTalks(exchange: Exchange): void {
    const limitText = exchange.url.searchParams.get('limit');
    const limit = limitText === null ? MAX_LIST_LIMIT : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1) {
      this.#sendJson(exchange, 400, validationError({ 'query.limit': { message: 'must be a positive integer' } }));
      return;
    }
    const token = exchange.url.searchParams.get('token');
    const beforeSequence = token === null ? Infinity : decodePageToken(token);
    if (beforeSequence === undefined) {
      this.#sendJson(exchange, 400, { kind: 'BadRequestError', description: 'invalid token' });
      return;
    }
    const page = this.#talks.page(Math.min(limit, MAX_LIST_LIMIT), beforeSequence);
    const baseUrl = this.#publicBaseUrl(exchange);
    const body: Record<string, unknown> = { talks: page.talks.map((talk) => this.#describe(talk, baseUrl)) };
    const last = page.talks.at(-1);
    if (page.hasMore && last) body.token = encodePageToken(last.sequence);
    this.#sendJson(exchange, 200, body);
  }

  #deleteTalk(exchange: Exchange, id: string): void {
    const talk = this.#talks.get(id);
    if (!talk) {
      this.#sendNotFound(exchange);
      return;
    }
    if (isRendering(statusAt(talk, Date.now()))) {
      this.#sendJson(exchange, 409, { kind: 'NotReadyError', description: 'talk is in process, try again later' });
      return;
    }
    const view = this.#describe(talk, this.#publicBaseUrl(exchange));
    this.#talks.delete(id);
    this.#sendJson(exchange, 200, view);
  }

  #getCredits(exchange: Exchange): void {
    const unlimited = this.knobs.credits === Infinity;
    const remaining = unlimited ? UNLIMITED_CREDITS_REPORTED : this.knobs.credits;
    const total = unlimited ? UNLIMITED_CREDITS_REPORTED : remaining + this.#creditsSpent;
    const expireAt = new Date(this.#startedAtMs + CREDITS_VALID_FOR_MS).toISOString();
    this.#sendJson(exchange, 200, {
      credits: [{ owner_id: SIMULATED_OWNER, remaining, total, expire_at: expireAt, valid_from: new Date(this.#startedAtMs).toISOString() }],
      remaining,
      total,
    });
  }

  /** Presigned, so no API key: the signature (and its expiry) is the only check, as on S3. */
  #serveMedia(exchange: Exchange, file: string, headOnly: boolean): void {
    const nowMs = Date.now();
    const check = this.#signer.check(`/media/${file}`, exchange.url.searchParams, nowMs);
    if (!check.ok) {
      const xml =
        check.reason === 'expired'
          ? s3ErrorXml('AccessDenied', 'Request has expired', { Expires: new Date(check.expiresSeconds * 1000).toISOString(), ServerTime: new Date(nowMs).toISOString(), ...this.#s3RequestIds() })
          : s3ErrorXml('AccessDenied', 'Access Denied', this.#s3RequestIds());
      this.#send(exchange, 403, xml, { 'content-type': 'application/xml' });
      return;
    }
    const talk = this.#talks.get(file.replace(/\.mp4$/, ''));
    if (!talk || statusAt(talk, nowMs) !== 'done') {
      this.#send(exchange, 404, s3ErrorXml('NoSuchKey', 'The specified key does not exist.', { Key: file, ...this.#s3RequestIds() }), { 'content-type': 'application/xml' });
      return;
    }

    const ownVideo = this.#videoOf(talk);
    const video = this.knobs.stampTalkId ? stampedVideo(ownVideo, talk.id) : ownVideo;
    const plan = planVideoResponse(video.length, exchange.req.headers.range);
    if (plan.status === 416) {
      this.#send(exchange, 416, s3ErrorXml('InvalidRange', 'The requested range is not satisfiable', this.#s3RequestIds()), {
        'content-type': 'application/xml',
        'content-range': plan.contentRange,
      });
      return;
    }
    const bytes = video.subarray(plan.start, plan.endInclusive + 1);
    const headers: OutgoingHttpHeaders = {
      'content-type': 'video/mp4',
      'content-length': bytes.length,
      'accept-ranges': 'bytes',
      etag: video === this.#video ? this.#videoEtag : `"${createHash('md5').update(video).digest('hex')}"`,
      'last-modified': new Date(finishedAtMs(talk)).toUTCString(),
    };
    if (plan.contentRange !== undefined) headers['content-range'] = plan.contentRange;
    this.#writeHead(exchange, plan.status, headers);
    if (headOnly) {
      exchange.res.end();
      return;
    }
    this.#counters.downloads++;
    if (this.#happens(this.knobs.truncateDownloadRate)) {
      // Content-Length promised every byte; dropping the connection halfway is what a flaky network looks like to the client.
      exchange.res.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => exchange.res.destroy());
      return;
    }
    exchange.res.end(bytes);
  }

  async #routeAdmin(exchange: Exchange, method: string, path: string): Promise<void> {
    if (path === '/__sim/stats' && method === 'GET') {
      this.#sendJson(exchange, 200, this.stats());
    } else if (path === '/__sim/stats/reset' && method === 'POST') {
      this.resetStats();
      this.#sendJson(exchange, 200, this.stats());
    } else if (path === '/__sim/knobs' && method === 'GET') {
      this.#sendJson(exchange, 200, knobsToJson(this.knobs));
    } else if (path === '/__sim/knobs' && method === 'POST') {
      const body = await readBody(exchange.req, MAX_BODY_BYTES);
      if (body === 'too-large') {
        this.#sendJson(exchange, 413, { kind: 'PayloadTooLargeError', description: 'knobs body too large' });
        return;
      }
      try {
        this.setKnobs(JSON.parse(body.toString('utf8')));
      } catch (error) {
        if (!(error instanceof InvalidKnobsError || error instanceof SyntaxError)) throw error;
        this.#sendJson(exchange, 400, { kind: 'ValidationError', description: error.message });
        return;
      }
      this.#sendJson(exchange, 200, knobsToJson(this.knobs));
    } else {
      this.#sendJson(exchange, 404, { kind: 'NotFoundError', description: `no admin route for ${method} ${path}` });
    }
  }

  /** The fixture video, or the talk's own one (personalised-video.ts). */
  #videoOf(talk: SimulatedTalk): Buffer {
    return this.#personalised?.videoFor(talk.id) ?? this.#video;
  }

  #describe(talk: SimulatedTalk, baseUrl: string): Record<string, unknown> {
    return describeTalk(talk, {
      nowMs: Date.now(),
      videoSizeBytes: this.#video.length,
      resultUrl: () => this.#signedResultUrl(talk, baseUrl),
      omitDurationOnFailure: this.knobs.omitDurationOnFailure,
    });
  }

  /** Each read signs a fresh link, so a client whose link expired recovers by reading the talk again. */
  #signedResultUrl(talk: SimulatedTalk, baseUrl: string): string {
    const nowMs = Date.now();
    const expiresSeconds = this.#happens(this.knobs.expireBeforeDownloadRate)
      ? Math.floor(nowMs / 1000) - 1
      : Math.floor((nowMs + this.knobs.resultUrlTtlMs) / 1000);
    const objectPath = `/media/${talk.id}.mp4`;
    return `${baseUrl}${objectPath}?${this.#signer.queryFor(objectPath, expiresSeconds)}`;
  }

  /** Links in responses use the Host the client reached us by, so they work through port mappings too. */
  #publicBaseUrl(exchange: Exchange): string {
    const host = exchange.req.headers.host;
    return host !== undefined && /^[\w.:[\]-]+$/.test(host) ? `http://${host}` : this.#url;
  }

  #jitteredRenderMs(): number {
    const { renderMs, renderJitter } = this.knobs;
    if (renderJitter === 0) return renderMs;
    return Math.max(0, renderMs * (1 + renderJitter * (2 * this.#random() - 1)));
  }

  #drawOutcome(): TalkOutcome {
    if (this.knobs.errorRate + this.knobs.rejectRate === 0) return 'done';
    const draw = this.#random();
    if (draw < this.knobs.errorRate) return 'error';
    if (draw < this.knobs.errorRate + this.knobs.rejectRate) return 'rejected';
    return 'done';
  }

  /** True with the given probability. Like the jitter and outcome draws, it skips the draw when nothing can happen, so a seeded `random` replays the same faults whatever else is switched off. */
  #happens(probability: number): boolean {
    return probability > 0 && this.#random() < probability;
  }

  #retryAfterHeader(): OutgoingHttpHeaders {
    const seconds = this.knobs.retryAfterSeconds;
    return seconds === null ? {} : { 'retry-after': String(seconds) };
  }

  #s3RequestIds(): Record<string, string> {
    return { RequestId: randomBytes(8).toString('hex').toUpperCase(), HostId: randomBytes(24).toString('base64') };
  }

  #sendNotFound(exchange: Exchange): void {
    this.#sendJson(exchange, 404, { kind: 'NotFoundError', description: 'not found' });
  }

  #sendJson(exchange: Exchange, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
    this.#send(exchange, status, JSON.stringify(body), { 'content-type': 'application/json; charset=utf-8', ...headers });
  }

  #send(exchange: Exchange, status: number, body: string, headers: OutgoingHttpHeaders): void {
    const bytes = Buffer.from(body, 'utf8');
    this.#writeHead(exchange, status, { ...headers, 'content-length': bytes.length });
    exchange.res.end(bytes);
  }

  /** Every response passes here, so the status is counted when it is decided rather than when the socket closes. */
  #writeHead(exchange: Exchange, status: number, headers: OutgoingHttpHeaders): void {
    if (exchange.counted) {
      const key = String(status);
      this.#counters.responsesByStatus.set(key, (this.#counters.responsesByStatus.get(key) ?? 0) + 1);
    }
    exchange.res.writeHead(status, headers);
  }
}

function emptyCounters() {
  return {
    createsByUserData: new Map<string, number>(),
    responsesByStatus: new Map<string, number>(),
    billedCredits: new Map<string, number>(),
    totalBilledCredits: 0,
    totalCreates: 0,
    totalRequests: 0,
    maxConcurrentRendersSeen: 0,
    downloads: 0,
    maxRendersDuringDownloads: 0,
    webhooksSent: 0,
    webhookFailures: 0,
    uploads: 0,
  };
}

/** The plan-gated feature a create uses, named as D-ID's PermissionError names it. */
function planGatedFeature(body: TalkRequestBody): string | undefined {
  if (body.config?.stitch === true) return 'stitch';
  if (body.script.subtitles === true) return 'subtitles';
  return undefined;
}

const NON_IMAGE_EXTENSION = /\.(mp4|mov|webm|html?|txt|pdf|json)$/i;

/** The source check by name only: the simulator never fetches a user's URL. */
function sourceFailureOf(sourceUrl: string | undefined, nonImageSources: readonly string[]): TalkFailure | undefined {
  if (sourceUrl === undefined) return undefined;
  if (nonImageSources.includes(sourceUrl)) return { kind: 'SourceError', description: 'source_url does not point to an image', details: { source_url: sourceUrl } };
  let path: string;
  try {
    path = new URL(sourceUrl).pathname;
  } catch {
    return undefined;
  }
  if (!NON_IMAGE_EXTENSION.test(path)) return undefined;
  return { kind: 'SourceError', description: 'source_url does not point to an image', details: { source_url: sourceUrl } };
}

function validationError(details: Record<string, { message: string }>): object {
  return { kind: 'ValidationError', description: 'Invalid request body', details };
}

/** The video with a top-level ISO BMFF `free` box appended (players skip it) holding `talk_id=<id>`. */
export function stampedVideo(video: Buffer, talkId: string): Buffer {
  const payload = Buffer.from(`talk_id=${talkId}`, 'utf8');
  const header = Buffer.alloc(8);
  header.writeUInt32BE(8 + payload.length, 0);
  header.write('free', 4, 'latin1');
  return Buffer.concat([video, header, payload]);
}

/** The talk id a stamped video carries, or undefined. */
export function talkIdInVideo(video: Buffer): string | undefined {
  return /talk_id=(tlk_[\w-]+)$/.exec(video.subarray(-64).toString('latin1'))?.[1];
}

function imageTypeOf(bytes: Buffer): 'jpg' | 'png' | undefined {
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpg';
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  return undefined;
}

function isJsonContentType(header: string | undefined): boolean {
  return header !== undefined && header.split(';')[0]?.trim().toLowerCase() === 'application/json';
}

/** Reads the whole body; past `limit` it keeps draining (so the client still gets the answer) but stops keeping bytes. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  return size > limit ? 'too-large' : Buffer.concat(chunks);
}

/** Page tokens are opaque to clients, like D-ID's; inside they hold the sequence number of the last talk sent. */
function encodePageToken(sequence: number): string {
  return Buffer.from(`after:${sequence}`).toString('base64url');
}

function decodePageToken(token: string): number | undefined {
  const match = /^after:(\d+)$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/** A path segment, percent-decoded; undefined when absent or not decodable (so the route does not match). */
function decodeSegment(segment: string | undefined): string | undefined {
  if (segment === undefined) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
