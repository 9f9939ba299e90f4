import { fileURLToPath } from 'node:url';

/** The repository root (bench/ sits directly under it). */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
