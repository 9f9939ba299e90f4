import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { Agent, buildConnector, fetch, type Response } from 'undici';

/*
 * Every request talkbatch makes on a user's behalf (manifest URLs, batch callbacks, share links, per-row webhooks)
 * goes through outboundFetch, so a URL a user wrote can never reach this machine, the cloud metadata service or the
 * operator's private network. The address check runs inside the connection step, on every address DNS returned,
 * so what is checked is what is connected to (no window for DNS rebinding), and redirects are followed by hand so
 * each hop is checked before a byte is sent to it.
 */

export interface OutboundPolicy {
  /** Hosts the operator opened although they resolve to non-public addresses: host names or IP literals,
   *  optionally with :port (config TALKBATCH_OUTBOUND_ALLOW, comma-separated). */
  readonly allow: readonly string[];
}

export type OutboundRefusal = 'scheme' | 'non-public-address' | 'too-many-redirects';

export class OutboundRefusedError extends Error {
  readonly reason: OutboundRefusal;
  constructor(reason: OutboundRefusal, message: string) {
    super(message);
    this.name = 'OutboundRefusedError';
    this.reason = reason;
  }
}

/** Blocks that ipaddr.js calls 'unicast' but that are not globally routable either. */
const NON_PUBLIC_V4: ReadonlyArray<[ipaddr.IPv4, number]> = [
  [ipaddr.IPv4.parse('0.0.0.0'), 8],
  [ipaddr.IPv4.parse('192.0.0.0'), 24],
];

function isPublicV4(address: ipaddr.IPv4): boolean {
  if (address.range() !== 'unicast') return false;
  return !NON_PUBLIC_V4.some(([network, bits]) => address.match(network, bits));
}

/** true for globally routable unicast addresses only (not loopback, private, link-local, CGNAT, ULA,
 *  multicast, unspecified, documentation, IPv4-mapped private, ...). */
export function isPublicAddress(ip: string): boolean {
  const text = ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (!ipaddr.isValid(text) || isIP(text) === 0) return false;
  const address = ipaddr.parse(text);
  if (address.kind() === 'ipv4') return isPublicV4(address as ipaddr.IPv4);
  const v6 = address as ipaddr.IPv6;
  const range = v6.range();
  // Forms that carry an IPv4 address reach that address: judge it instead.
  if (range === 'ipv4Mapped' || range === 'rfc6145') return isPublicV4(v6.toIPv4Address());
  if (range === 'rfc6052') return isPublicV4(new ipaddr.IPv4(v6.toByteArray().slice(12)));
  // Global unicast is 2000::/3; ipaddr.js calls anything outside its special ranges unicast, 6to4 and Teredo included.
  return range === 'unicast' && v6.match(ipaddr.IPv6.parse('2000::'), 3);
}

export interface OutboundRequest {
  method?: 'GET' | 'HEAD' | 'POST';
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Total deadline for connect + headers + body, which fires whatever the garbage collector does. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Default 5; each hop is checked before it is followed. */
  maxRedirects?: number;
}

interface AllowEntry {
  host: string;
  port: string | undefined;
}

function parseAllowEntry(entry: string): AllowEntry {
  const text = entry.trim().toLowerCase();
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) return { host: bracketed[1] ?? '', port: bracketed[2] };
  // A bare IPv6 literal has several colons and no port.
  if (isIP(text) === 6) return { host: text, port: undefined };
  const withPort = /^(.*):(\d+)$/.exec(text);
  return withPort ? { host: withPort[1] ?? '', port: withPort[2] } : { host: text, port: undefined };
}

function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  if (isIP(a) !== 0 && isIP(b) !== 0 && ipaddr.isValid(a) && ipaddr.isValid(b)) {
    return ipaddr.parse(a).toNormalizedString() === ipaddr.parse(b).toNormalizedString();
  }
  return false;
}

/** The allow-list as one compiled matcher; `host` is a name or an IP literal without brackets. */
class AllowList {
  readonly #entries: readonly AllowEntry[];

  constructor(entries: readonly string[]) {
    this.#entries = entries.filter((entry) => entry.trim() !== '').map(parseAllowEntry);
  }

  allows(host: string, port: string): boolean {
    const name = host.toLowerCase().replace(/\.$/, '');
    return this.#entries.some((entry) => (entry.port === undefined || entry.port === port) && sameHost(entry.host, name));
  }
}

function defaultPort(protocol: string): string {
  return protocol === 'https:' ? '443' : '80';
}

function refusedAddress(host: string): OutboundRefusedError {
  return new OutboundRefusedError('non-public-address', `refused: ${host} is not a public address`);
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A dns lookup for net.connect that fails unless every address the name resolves to may be connected to. */
function checkedLookup(allow: AllowList, port: string) {
  return (hostname: string, options: { all?: boolean; family?: number; hints?: number }, callback: LookupCallback): void => {
    dnsLookup(hostname, { family: options.family ?? 0, hints: options.hints, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      // Every address, not just the first: net may try them all (autoSelectFamily), and a name that mixes a
      // public and a private address is exactly what a rebinding attack serves.
      const refused = addresses.find((entry) => !isPublicAddress(entry.address) && !allow.allows(entry.address, port));
      if (refused !== undefined || addresses.length === 0) return callback(refusedAddress(hostname), []);
      if (options.all) return callback(null, addresses);
      const first = addresses[0] as LookupAddress;
      return callback(null, first.address, first.family);
    });
  };
}

type Connector = ReturnType<typeof buildConnector>;

/** One undici Agent per allow-list: connections are pooled, and each new one passes the check. */
function guardedAgent(allowEntries: readonly string[]): Agent {
  const allow = new AllowList(allowEntries);
  const open = buildConnector({});
  const checkedByPort = new Map<string, Connector>();
  const connect: Connector = (options, callback) => {
    const port = options.port === '' ? defaultPort(options.protocol) : options.port;
    const host = options.hostname;
    if (allow.allows(host, port)) return open(options, callback);
    if (isIP(host) !== 0) {
      if (isPublicAddress(host)) return open(options, callback);
      return callback(refusedAddress(host), null);
    }
    let checked = checkedByPort.get(port);
    if (checked === undefined) {
      checked = buildConnector({ lookup: checkedLookup(allow, port) } as buildConnector.BuildOptions);
      checkedByPort.set(port, checked);
    }
    return checked(options, callback);
  };
  return new Agent({ connect });
}

const agents = new Map<string, Agent>();

function agentFor(policy: OutboundPolicy): Agent {
  const key = policy.allow.join(',');
  let agent = agents.get(key);
  if (agent === undefined) {
    agent = guardedAgent(policy.allow);
    agents.set(key, agent);
  }
  return agent;
}

/**
 * A signal that aborts after `timeoutMs`, held by a plain timer: AbortSignal.timeout is deliberately weak and
 * Node 20's AbortSignal.any can let it be collected, after which it never fires.
 */
function deadlineSignal(timeoutMs: number, outer: AbortSignal | undefined): AbortSignal {
  const controller = new AbortController();
  const timer = setTimeout(() => {
    controller.abort(new DOMException(`no complete answer within ${timeoutMs} ms`, 'TimeoutError'));
  }, timeoutMs);
  // The socket keeps the process alive while a request is open; the timer alone should not.
  timer.unref();
  controller.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  if (outer !== undefined) {
    if (outer.aborted) controller.abort(outer.reason);
    else outer.addEventListener('abort', () => controller.abort(outer.reason), { once: true, signal: controller.signal });
  }
  return controller.signal;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Headers that must not follow a redirect to another origin. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

function checkHop(url: URL, allow: AllowList): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new OutboundRefusedError('scheme', `refused: only http(s) URLs can be fetched (got ${url.protocol})`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // IP literals never reach the DNS lookup: checked here, and again when connecting.
  if (isIP(host) !== 0 && !isPublicAddress(host) && !allow.allows(host, url.port || defaultPort(url.protocol))) throw refusedAddress(host);
}

/** undici wraps connection errors in `TypeError: fetch failed`; a refusal is reported as itself. */
function refusalIn(error: unknown): OutboundRefusedError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth += 1) {
    if (current instanceof OutboundRefusedError) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function headersWithout(headers: Record<string, string>, drop: (name: string) => boolean): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !drop(name)));
}

/** Fetches only http(s) URLs whose every hop resolves (DNS checked at connect time: no rebinding) to public
 *  addresses or allowed hosts. Throws OutboundRefusedError before any byte is sent to a refused address. */
export async function outboundFetch(
  url: URL,
  request: OutboundRequest,
  policy: OutboundPolicy,
): Promise<{ response: Response; finalUrl: URL; deadline: AbortSignal }> {
  const allow = new AllowList(policy.allow);
  const dispatcher = agentFor(policy);
  const maxRedirects = request.maxRedirects ?? 5;
  const deadline = deadlineSignal(request.timeoutMs, request.signal);
  let current = new URL(url.href);
  let method: string = request.method ?? 'GET';
  let body: string | Uint8Array | undefined = request.body;
  let headers: Record<string, string> = { ...request.headers };

  for (let hop = 0; ; hop += 1) {
    checkHop(current, allow);
    let response: Response;
    try {
      response = await fetch(current, { method, headers, ...(body !== undefined ? { body } : {}), redirect: 'manual', signal: deadline, dispatcher });
    } catch (error) {
      throw refusalIn(error) ?? (deadline.aborted ? deadline.reason : error);
    }
    const location = response.headers.get('location');
    if (!REDIRECT_STATUSES.has(response.status) || location === null) return { response, finalUrl: current, deadline };

    await response.body?.cancel().catch(() => undefined);
    if (hop >= maxRedirects) throw new OutboundRefusedError('too-many-redirects', `refused: more than ${maxRedirects} redirects`);
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new OutboundRefusedError('scheme', 'refused: a redirect pointed at something that is not a URL');
    }
    if (response.status === 303 ? method !== 'HEAD' : (response.status === 301 || response.status === 302) && method === 'POST') {
      method = 'GET';
      body = undefined;
      headers = headersWithout(headers, (name) => /^content-/i.test(name));
    }
    if (next.origin !== current.origin) {
      headers = headersWithout(headers, (name) => CREDENTIAL_HEADERS.includes(name.toLowerCase()));
    }
    current = next;
  }
}
