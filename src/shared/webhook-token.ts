import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * D-ID's talk webhooks are unsigned, so the URL itself carries proof: an HMAC of the job id under a
 * server secret. Only someone who saw the URL (D-ID) can call it; the talk is re-read before trusting it.
 */
export function webhookToken(secret: string, jobId: string): string {
  return createHmac('sha256', secret).update(`did-webhook:${jobId}`).digest('base64url');
}

export function verifyWebhookToken(secret: string, jobId: string, token: string): boolean {
  const expected = Buffer.from(webhookToken(secret, jobId));
  const given = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export function webhookUrl(publicUrl: string, secret: string, jobId: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/webhooks/did/${encodeURIComponent(jobId)}/${webhookToken(secret, jobId)}`;
}
