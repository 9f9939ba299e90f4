import { describe, expect, it } from 'vitest';
import { UrlSigner } from '../../src/simulator/presign.js';

describe('UrlSigner', () => {
  const nowMs = 1_700_000_000_000;
  const path = '/media/tlk_abc.mp4';

  it('accepts its own link until Expires', () => {
    const signer = new UrlSigner();
    const query = new URLSearchParams(signer.queryFor(path, nowMs / 1000 + 60));
    expect(query.get('AWSAccessKeyId')).toBe('SIMKEY');
    expect(signer.check(path, query, nowMs)).toEqual({ ok: true });
    expect(signer.check(path, query, nowMs + 60_000)).toEqual({ ok: false, reason: 'expired', expiresSeconds: nowMs / 1000 + 60 });
  });

  it('refuses a link for another path, with another Expires, from another signer, or unsigned', () => {
    const signer = new UrlSigner();
    const query = new URLSearchParams(signer.queryFor(path, nowMs / 1000 + 60));
    expect(signer.check('/media/tlk_other.mp4', query, nowMs)).toMatchObject({ reason: 'bad-signature' });
    const extended = new URLSearchParams(query);
    extended.set('Expires', String(nowMs / 1000 + 6000));
    expect(signer.check(path, extended, nowMs)).toMatchObject({ reason: 'bad-signature' });
    expect(new UrlSigner().check(path, query, nowMs)).toMatchObject({ reason: 'bad-signature' });
    expect(signer.check(path, new URLSearchParams(), nowMs)).toMatchObject({ reason: 'unsigned' });
  });
});
