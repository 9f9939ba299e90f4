/** Root of every error talkbatch raises on purpose; `code` is stable and is what logs and reports key on. */
export abstract class AppError extends Error {
  abstract readonly code: string;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ConfigError extends AppError {
  readonly code = 'CONFIG_INVALID';
  constructor(readonly issues: readonly string[]) {
    super(`invalid configuration:\n${issues.map((issue) => `  - ${issue}`).join('\n')}`);
  }
}

/** A usage mistake on the command line or in an API call: exit code 2, nothing changed. */
export class UsageError extends AppError {
  readonly code = 'USAGE';
}
