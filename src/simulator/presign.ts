import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Shown as AWSAccessKeyId so a result_url looks like D-ID's S3 SigV2 presigned links. */
export const SIMULATED_ACCESS_KEY_ID = 'SIMKEY';

export type PresignCheck =
  | { ok: true }
  | { ok: false; reason: 'unsigned' | 'bad-signature' }
  | { ok: false; reason: 'expired'; expiresSeconds: number };

/**
 * Signs and checks query strings the way S3's SigV2 presigned URLs look (`AWSAccessKeyId`, `Expires` in
 * unix seconds, `Signature`), with a secret made per simulator, so a link only works on the simulator
 * that issued it and any edit of the path or Expires breaks it.
 */
export class UrlSigner {
  readonly #secret = randomBytes(32);

  /** The query string (without `?`) that makes `objectPath` downloadable until `expiresSeconds`. */
  queryFor(objectPath: string, expiresSeconds: number): string {
    return new URLSearchParams({
      AWSAccessKeyId: SIMULATED_ACCESS_KEY_ID,
      Expires: String(expiresSeconds),
      Signature: this.#signature(objectPath, expiresSeconds),
    }).toString();
  }

  check(objectPath: string, query: URLSearchParams, nowMs: number): PresignCheck {
    const expiresText = query.get('Expires');
    const signature = query.get('Signature');
    if (query.get('AWSAccessKeyId') !== SIMULATED_ACCESS_KEY_ID || expiresText === null || signature === null) return { ok: false, reason: 'unsigned' };
    if (!/^\d{1,12}$/.test(expiresText)) return { ok: false, reason: 'bad-signature' };
    const expiresSeconds = Number(expiresText);
    const expected = Buffer.from(this.#signature(objectPath, expiresSeconds));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'bad-signature' };
    if (nowMs >= expiresSeconds * 1000) return { ok: false, reason: 'expired', expiresSeconds };
    return { ok: true };
  }

  #signature(objectPath: string, expiresSeconds: number): string {
    // SigV2's string to sign for a plain GET: verb, (empty) Content-MD5 and Content-Type, Expires, resource.
    return createHmac('sha1', this.#secret).update(`GET\n\n\n${expiresSeconds}\n${objectPath}`).digest('base64');
  }
}
