/**
 * JSON.stringify typed as it behaves: undefined, functions and symbols have no JSON form and give undefined
 * (its declared type says string).
 */
export function jsonText(value: unknown): string | undefined {
  return JSON.stringify(value);
}
