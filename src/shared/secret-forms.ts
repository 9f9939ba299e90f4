/*
 * A secret can come back from an upstream in other forms than the one we hold: the base64 of `user:pass` as sent
 * in a Basic header, the key's own base64, one half of a `user:secret` key, URL-encoded. Redaction removes every
 * form, longest first, so no piece of a longer form survives a shorter one's replacement.
 */

/** Shorter pieces are too likely to occur by chance in ordinary text to be worth removing. */
const MIN_FORM = 6;

function base64Forms(text: string): string[] {
  const buffer = Buffer.from(text, 'utf8');
  return [buffer.toString('base64'), buffer.toString('base64url'), buffer.toString('base64').replace(/=+$/, '')];
}

/** The halves of `user:secret`. */
function halves(text: string): string[] {
  const index = text.indexOf(':');
  return index > 0 ? [text.slice(0, index), text.slice(index + 1)] : [];
}

/** Every form of `secret` worth redacting, longest first, without duplicates. */
export function secretForms(secret: string): string[] {
  const forms = new Set<string>([secret, ...base64Forms(secret), encodeURIComponent(secret), ...halves(secret)]);
  // A key that is itself base64 of `user:pass` (D-ID's Basic form): its decoded text and that text's halves.
  if (/^[A-Za-z0-9+/_-]+=*$/.test(secret)) {
    const decoded = Buffer.from(secret, 'base64').toString('utf8');
    if (/^[\x21-\x7e]+:[\x21-\x7e]+$/.test(decoded)) for (const form of [decoded, encodeURIComponent(decoded), ...halves(decoded)]) forms.add(form);
  }
  for (const half of halves(secret)) for (const form of [...base64Forms(half), encodeURIComponent(half)]) forms.add(form);
  return [...forms].filter((form) => form.length >= MIN_FORM).sort((a, b) => b.length - a.length);
}

/** `text` with every form of every secret replaced. */
export function redactSecrets(text: string, secrets: readonly string[], censor = '[redacted]'): string {
  const forms = [...new Set(secrets.flatMap(secretForms))].sort((a, b) => b.length - a.length);
  return forms.reduce((out, form) => out.split(form).join(censor), text);
}
