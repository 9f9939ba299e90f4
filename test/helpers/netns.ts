import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ensureProgram, ProgramUnavailableError, type SystemProgram } from '../../src/shared/system-package.js';

/*
 * Separate "hosts" on one machine: each is a Linux network namespace with a veth pair into a bridge in the
 * root namespace, on a private /24 of its own. Processes started through `host.exec` see only their veth, so
 * taking the root end of it down cuts that host off from Redis and D-ID the way a pulled cable or a network
 * partition does: its TCP connections stay open and silent, nothing is refused. Used by the hosts-apart
 * fault test and by `npm run bench -- hosts`; no vitest imports here.
 */

export const IPROUTE2: SystemProgram = {
  purpose: 'running workers as separate hosts (network namespaces)',
  candidates: ['ip', '/usr/sbin/ip', '/usr/bin/ip'],
  debianPackage: 'iproute2',
  debianPath: '/sbin/ip',
  fixes: {
    debian: 'sudo apt-get install iproute2 (and run as root)',
    macos: 'not available (Linux network namespaces)',
    docker: 'run the container with --cap-add NET_ADMIN and install iproute2',
  },
};

export type NetnsSupport = { ok: true; ip: string } | { ok: false; reason: string };

let probed: NetnsSupport | undefined;

/**
 * Whether this machine lets us make namespaces: Linux, root, `ip` (installed from Debian's iproute2 when
 * missing, as redis-server and ffmpeg are), and a probe namespace that can really be added and removed.
 * Probed once per process; `reason` says what is missing.
 */
export function netnsSupport(announce: (message: string) => void = (message) => console.warn(message)): NetnsSupport {
  probed ??= probe(announce);
  return probed;
}

function probe(announce: (message: string) => void): NetnsSupport {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'making network namespaces needs root (run as root, e.g. in CI or a privileged container)' };
  let ip: string;
  try {
    ip = ensureProgram(IPROUTE2, announce);
  } catch (error) {
    if (error instanceof ProgramUnavailableError) return { ok: false, reason: error.message };
    throw error;
  }
  const name = `tb${randomBytes(3).toString('hex')}probe`;
  const added = spawnSync(ip, ['netns', 'add', name], { encoding: 'utf8' });
  if (added.status !== 0) return { ok: false, reason: `\`ip netns add\` failed here (${(added.stderr || added.error?.message || '').trim() || `exit ${added.status}`}); a container needs --cap-add NET_ADMIN` };
  spawnSync(ip, ['netns', 'del', name]);
  return { ok: true, ip };
}

export interface NetnsHost {
  /** The namespace's name (`ip netns list`). */
  readonly ns: string;
  /** This host's address on the lab's /24. */
  readonly address: string;
  /** The veth end in the root namespace: down means this host is cut off. */
  readonly link: string;
  /** Command prefix that runs a program inside this host: `[...host.exec, process.execPath, ...]`. */
  readonly exec: readonly string[];
  /** Takes the host's link down: its packets are dropped, its connections hang as on a partition. */
  cut(): void;
  /** Brings the link back up. */
  restore(): void;
}

export interface NetnsLab {
  /** The root namespace's address on the bridge: servers the hosts reach listen here. */
  readonly gateway: string;
  readonly bridge: string;
  readonly hosts: readonly NetnsHost[];
  /** Removes every link and namespace of the lab; safe to call twice. Processes inside must be stopped first. */
  close(): void;
}

/** Runs `ip` with these arguments; throws with its stderr when it fails. */
function ipRun(ip: string, args: readonly string[]): string {
  const result = spawnSync(ip, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${(result.stderr || result.error?.message || '').trim() || `exit ${result.status}`}`);
  return result.stdout;
}

/** A 10.x.y.0/24 that no address in the root namespace uses yet (parallel labs each get their own). */
function freeSubnet(ip: string): string {
  const used = ipRun(ip, ['-4', '-o', 'addr', 'show']);
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const subnet = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(` ${subnet}.`)) return subnet;
  }
  throw new Error('no free 10.x.y.0/24 found for the namespace lab');
}

/**
 * `count` hosts, each in its own namespace on a bridge in the root namespace. Names are `tb` + 6 random
 * hex digits + a suffix, so parallel runs do not clash; everything made is removed by close(), which also
 * runs when this process exits. Needs netnsSupport().ok.
 */
export function createNetnsLab(count: number): NetnsLab {
  const support = netnsSupport();
  if (!support.ok) throw new Error(support.reason);
  const { ip } = support;
  const tag = `tb${randomBytes(3).toString('hex')}`;
  const subnet = freeSubnet(ip);
  const bridge = `${tag}br`;
  const gateway = `${subnet}.1`;
  const hosts: NetnsHost[] = [];
  const made: { links: string[]; namespaces: string[]; bridge: boolean } = { links: [], namespaces: [], bridge: false };
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    process.off('exit', close);
    // Deleting the root end of a veth removes its peer too; a namespace goes once nothing runs in it.
    for (const link of made.links) spawnSync(ip, ['link', 'del', link]);
    for (const ns of made.namespaces) spawnSync(ip, ['netns', 'del', ns]);
    if (made.bridge) spawnSync(ip, ['link', 'del', bridge]);
  };
  process.once('exit', close);
  try {
    ipRun(ip, ['link', 'add', bridge, 'type', 'bridge']);
    made.bridge = true;
    ipRun(ip, ['addr', 'add', `${gateway}/24`, 'dev', bridge]);
    ipRun(ip, ['link', 'set', bridge, 'up']);
    for (let i = 0; i < count; i += 1) {
      const ns = `${tag}-${i}`;
      const link = `${tag}h${i}`;
      const inner = `${tag}n${i}`;
      const address = `${subnet}.${10 + i}`;
      ipRun(ip, ['netns', 'add', ns]);
      made.namespaces.push(ns);
      ipRun(ip, ['link', 'add', link, 'type', 'veth', 'peer', 'name', inner]);
      made.links.push(link);
      ipRun(ip, ['link', 'set', inner, 'netns', ns]);
      ipRun(ip, ['link', 'set', link, 'master', bridge]);
      ipRun(ip, ['link', 'set', link, 'up']);
      ipRun(ip, ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', inner]);
      ipRun(ip, ['-n', ns, 'link', 'set', inner, 'up']);
      ipRun(ip, ['-n', ns, 'link', 'set', 'lo', 'up']);
      hosts.push({
        ns,
        address,
        link,
        exec: [ip, 'netns', 'exec', ns],
        cut: () => void ipRun(ip, ['link', 'set', link, 'down']),
        restore: () => void ipRun(ip, ['link', 'set', link, 'up']),
      });
    }
  } catch (error) {
    close();
    throw error;
  }
  return { gateway, bridge, hosts, close };
}
