import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BILLING_RULE, estimateCredits, estimateTalkCredits } from '../../src/did/billing.js';
import { batchCredits, canonicalJson, requestSha256, rowCredits } from '../../src/queue/credits.js';

const talk = { source_url: 'https://example.com/a.jpg', script: { type: 'text' as const, input: 'Hello there' } };

describe('the billing rule', () => {
  it('charges 1 credit per started 15 s of video, at least 1 per talk', () => {
    expect(BILLING_RULE).toBe('1 credit per started 15 s of video, at least 1 per talk');
    expect([0, 0.5, 14.9, 15, 15.01, 30, 30.5, 600].map(estimateCredits)).toEqual([1, 1, 1, 1, 2, 2, 3, 40]);
    // Unknown length (an audio script before D-ID has it): the minimum.
    expect(estimateCredits(null)).toBe(1);
  });

  it('counts pad_audio into a talk\'s estimate, as D-ID bills it', () => {
    expect(estimateTalkCredits(10, {})).toBe(1);
    expect(estimateTalkCredits(10, { config: { pad_audio: 6 } })).toBe(2);
    expect(estimateTalkCredits(null, { config: { pad_audio: 6 } })).toBe(1);
  });
});

describe('row credits', () => {
  it('applies the rule to the duration D-ID reported, else to the estimate, and says which', () => {
    expect(rowCredits({ talk, estimatedSeconds: 3 }, 31)).toEqual({ credits: 3, creditsSource: 'd-id' });
    expect(rowCredits({ talk, estimatedSeconds: 31 }, undefined)).toEqual({ credits: 3, creditsSource: 'estimate' });
    expect(rowCredits({ talk, estimatedSeconds: 31 }, 'twelve')).toEqual({ credits: 3, creditsSource: 'estimate' });
  });

  it('sums the ledger into before, after, used and estimated', () => {
    const at = '2026-12-02T00:00:00.000Z';
    expect(batchCredits({ before: { remaining: 100.5, total: 200, at }, after: { remaining: 90.2, total: 200, at }, rows: 10.3 })).toEqual({ before: 100.5, after: 90.2, used: 10.3, estimated: 10.3 });
    expect(batchCredits({ before: { remaining: null, total: null, at, error: 'HTTP 404' }, after: null, rows: 0 })).toEqual({ before: null, after: null, used: null, estimated: 0 });
  });
});

describe('request_sha256', () => {
  it('hashes the body as canonical JSON: keys sorted at every level, undefined left out', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { f: 'x', e: null }], c: undefined } })).toBe('{"a":{"d":[1,{"e":null,"f":"x"}]},"b":1}');
  });

  it('names the body sent: the user_data with talkbatch\'s tag for the job and retry, without the webhook', () => {
    const sha = requestSha256({ talk: { ...talk, webhook: 'https://example.com/hook' }, generation: 0 }, 'b1-r1');
    const expected = createHash('sha256').update(canonicalJson({ ...talk, user_data: 'b1-r1' })).digest('hex');
    expect(sha).toBe(expected);
    expect(requestSha256({ talk: { script: talk.script, source_url: talk.source_url }, generation: 0 }, 'b1-r1')).toBe(expected);
    expect(requestSha256({ talk, generation: 1 }, 'b1-r1')).toBe(createHash('sha256').update(canonicalJson({ ...talk, user_data: 'b1-r1#1' })).digest('hex'));
    expect(requestSha256({ talk: { ...talk, user_data: 'crm-7' }, generation: 0 }, 'b1-r1')).toBe(createHash('sha256').update(canonicalJson({ ...talk, user_data: 'crm-7 [talkbatch b1-r1]' })).digest('hex'));
  });
});
