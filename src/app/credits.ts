import type { Config } from '../config/index.js';
import { readCreditBalance, type CreditReading } from '../did/billing.js';
import { DidClient } from '../did/index.js';
export { batchCredits, type BatchCredits } from '../queue/credits.js';

/** Reads D-ID's balance (never throws), or undefined without an API key. */
export type CreditReader = () => Promise<CreditReading>;

/** A reader on its own short-lived client: used once per batch finish, so no connection is kept. */
export function creditReaderFor(config: Pick<Config, 'didApiKey' | 'didApiUrl' | 'httpTimeoutMs'>): CreditReader | undefined {
  const apiKey = config.didApiKey;
  if (!apiKey) return undefined;
  return async () => {
    const did = new DidClient({ apiKey, baseUrl: config.didApiUrl, timeoutMs: config.httpTimeoutMs });
    try {
      return await readCreditBalance(did);
    } finally {
      await did.close();
    }
  };
}
