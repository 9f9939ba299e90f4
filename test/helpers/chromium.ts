import type { SystemProgram } from '../../src/shared/system-package.js';

/**
 * The browser the review-page test drives through playwright-core (which downloads no browsers): Debian's
 * Chromium, installed on first use like redis-server, or one the user already has.
 */
export const CHROMIUM: SystemProgram = {
  purpose: 'the review-page browser test',
  candidates: ['chromium', 'chromium-browser', '/Applications/Chromium.app/Contents/MacOS/Chromium'],
  debianPackage: 'chromium',
  debianPath: '/usr/bin/chromium',
  fixes: {
    debian: 'sudo apt-get install -y chromium',
    macos: 'brew install --cask chromium',
    docker: 'docker run --rm -v "$PWD":/app -w /app node:20-bookworm sh -c "npm ci && npm test" (as root there, npm test installs it)',
  },
};

/** What the global setup found: the browser's path, or why there is none (the browser test fails with it). */
export type ChromiumLookup = { path: string } | { missing: string };
