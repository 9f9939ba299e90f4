import { describe, expect, it } from 'vitest';
import { DidClient } from '../../src/did/index.js';
import { redactSecrets } from '../../src/shared/secret-forms.js';

/* Upstreams echo credentials in other forms than the one talkbatch holds; each one is redacted. */

const USER = 'dana.example@gmail.com';
const SECRET = 'Xk29fLq0ZpW7rT4v';
const KEY = `${USER}:${SECRET}`;

describe('secret redaction', () => {
  const client = new DidClient({ apiKey: KEY, baseUrl: 'https://api.d-id.com', timeoutMs: 1_000 });
  it.each([
    ['as sent', KEY],
    ['base64 of user:secret', Buffer.from(KEY).toString('base64')],
    ['base64url', Buffer.from(KEY).toString('base64url')],
    ['the secret half', SECRET],
    ['the user half', USER],
    ['URL-encoded', encodeURIComponent(KEY)],
    ['base64 of the secret half', Buffer.from(SECRET).toString('base64')],
  ])('removes the key %s', (_label, form) => {
    const echoed = `{"kind":"AuthorizationError","description":"bad credentials: ${form} (header Basic ${form})"}`;
    const redacted = client.redact(echoed);
    expect(redacted).not.toContain(form);
    expect(redacted).not.toContain(SECRET);
    expect(redacted).toContain('[redacted]');
  });

  it('a key given in D-ID’s base64 form is redacted decoded too', () => {
    const encoded = Buffer.from(KEY).toString('base64');
    const text = redactSecrets(`echo ${KEY} and ${SECRET} and ${encodeURIComponent(KEY)}`, [encoded]);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(KEY);
  });
});
