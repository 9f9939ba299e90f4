import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** A program talkbatch (or its tests) can install from Debian's archive when it is missing. */
export interface SystemProgram {
  /** What it is for, in the announcement and the error ("the review-page browser test"). */
  readonly purpose: string;
  /** Places it may already be: command names looked up on PATH, or absolute paths. */
  readonly candidates: readonly string[];
  /** Debian/Ubuntu package that provides it. */
  readonly debianPackage: string;
  /** Where the Debian package puts it, should PATH not include that folder. */
  readonly debianPath: string;
  /** The one-line fixes shown when it cannot be installed here. */
  readonly fixes: { readonly debian: string; readonly macos: string; readonly docker: string };
}

/** The facts about this machine that decide what can be done. */
export interface HostFacts {
  readonly platform: NodeJS.Platform;
  /** Root may run apt-get; anyone else is told the sudo command instead. */
  readonly isRoot: boolean;
  /** /etc/debian_version exists (Debian, Ubuntu and their derivatives). */
  readonly isDebian: boolean;
  readonly hasAptGet: boolean;
}

export type ProgramPlan =
  | { readonly action: 'use'; readonly path: string }
  | { readonly action: 'install'; readonly announcement: string; readonly commands: readonly (readonly [string, ...string[]])[] }
  | { readonly action: 'fail'; readonly message: string };

/** Waiting for another apt-get (a parallel test run, unattended-upgrades) beats failing on its lock. */
const APT_LOCK_WAIT = ['-o', 'DPkg::Lock::Timeout=300'];

export function fixHint(program: SystemProgram): string {
  return `Debian/Ubuntu: ${program.fixes.debian}; macOS: ${program.fixes.macos}; Docker: ${program.fixes.docker}`;
}

/**
 * What to do about `program` on a machine described by `host`, where `locate` finds a candidate
 * (PATH lookup or file check). Pure, so the choice can be tested without removing anything.
 */
export function planProgram(program: SystemProgram, host: HostFacts, locate: (candidate: string) => string | undefined): ProgramPlan {
  for (const candidate of [...program.candidates, program.debianPath]) {
    const path = locate(candidate);
    if (path) return { action: 'use', path };
  }
  const missing = `${program.purpose} needs ${program.candidates[0]}, which is not installed`;
  if (host.platform === 'linux' && host.isDebian && host.hasAptGet && host.isRoot) {
    return {
      action: 'install',
      announcement: `${missing}; installing Debian's "${program.debianPackage}" package with apt-get (one time)...`,
      commands: [
        ['apt-get', ...APT_LOCK_WAIT, 'update', '-qq'],
        ['apt-get', ...APT_LOCK_WAIT, 'install', '-y', '-qq', program.debianPackage],
      ],
    };
  }
  const why = host.platform === 'linux' && host.isDebian && !host.isRoot ? ' (not root, so not installed automatically)' : '';
  return { action: 'fail', message: `${missing}${why}. ${fixHint(program)}` };
}

export function hostFacts(): HostFacts {
  return {
    platform: process.platform,
    isRoot: process.getuid?.() === 0,
    isDebian: existsSync('/etc/debian_version'),
    hasAptGet: Boolean(locateProgram('apt-get')),
  };
}

/** A command name looked up on PATH, or an absolute path that exists. */
export function locateProgram(candidate: string): string | undefined {
  if (candidate.startsWith('/')) return existsSync(candidate) ? candidate : undefined;
  const lookup = spawnSync('sh', ['-c', 'command -v "$0"', candidate], { encoding: 'utf8' });
  const found = lookup.status === 0 ? lookup.stdout.trim() : '';
  return found || undefined;
}

export class ProgramUnavailableError extends Error {}

/**
 * The program's path: found, or installed from Debian's archive after saying so (root on Debian/Ubuntu),
 * else ProgramUnavailableError with the one-line fixes. Synchronous: apt-get must finish before use.
 */
export function ensureProgram(
  program: SystemProgram,
  announce: (message: string) => void,
  host: HostFacts = hostFacts(),
  locate: (candidate: string) => string | undefined = locateProgram,
): string {
  const plan = planProgram(program, host, locate);
  if (plan.action === 'use') return plan.path;
  if (plan.action === 'fail') throw new ProgramUnavailableError(plan.message);
  announce(plan.announcement);
  for (const [command, ...args] of plan.commands) {
    const result = spawnSync('env', ['DEBIAN_FRONTEND=noninteractive', command, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (result.status !== 0) {
      throw new ProgramUnavailableError(`${command} ${args.join(' ')} failed (exit ${result.status}). ${fixHint(program)}`);
    }
  }
  const after = planProgram(program, host, locate);
  if (after.action !== 'use') throw new ProgramUnavailableError(`"${program.debianPackage}" was installed but ${program.candidates[0]} is still missing. ${fixHint(program)}`);
  return after.path;
}
