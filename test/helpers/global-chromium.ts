import type { TestProject } from 'vitest/node';
import { ensureProgram, ProgramUnavailableError } from '../../src/shared/system-package.js';
import { CHROMIUM, type ChromiumLookup } from './chromium.js';

declare module 'vitest' {
  export interface ProvidedContext {
    chromium: ChromiumLookup;
  }
}

/**
 * Chromium for the review-page browser test, looked for (and, as root on Debian/Ubuntu, installed after saying so)
 * once per test run, before any test file starts, so parallel files never race apt-get. A machine without it
 * still runs every other test: only the browser test fails, with the one-line fixes.
 */
export default function setup(project: TestProject): void {
  let lookup: ChromiumLookup;
  try {
    lookup = { path: ensureProgram(CHROMIUM, (message) => console.warn(message)) };
  } catch (error) {
    if (!(error instanceof ProgramUnavailableError)) throw error;
    lookup = { missing: error.message };
  }
  project.provide('chromium', lookup);
}
