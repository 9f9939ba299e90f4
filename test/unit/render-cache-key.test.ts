import { describe, expect, it } from 'vitest';
import { parseAge } from '../../src/app/render-cache.js';
import { renderRequestHash } from '../../src/worker/render-cache.js';

const API = 'https://api.d-id.com';
const BODY = {
  source_url: 'https://example.com/faces/ana.png',
  script: { type: 'text', input: 'Hello Ana, here is your video.', provider: { type: 'microsoft', voice_id: 'en-US-JennyNeural' } },
  config: { stitch: true, result_format: 'mp4' },
};

describe('render cache key', () => {
  it('leaves out the per-row fields and key order', () => {
    const base = renderRequestHash(BODY, API);
    expect(renderRequestHash({ ...BODY, user_data: 'crm-17 [talkbatch b1-row1]', webhook: 'https://example.com/hook', name: 'Ana', result_url: 's3://bucket/ana.mp4' }, API)).toBe(base);
    expect(renderRequestHash({ config: { result_format: 'mp4', stitch: true }, script: BODY.script, source_url: BODY.source_url }, `${API}/`)).toBe(base);
  });

  it('changes with anything that changes the video, and with the D-ID it is made at', () => {
    const base = renderRequestHash(BODY, API);
    const variants = [
      { ...BODY, source_url: 'https://example.com/faces/ben.png' },
      { ...BODY, script: { ...BODY.script, input: 'Hello Ben, here is your video.' } },
      { ...BODY, script: { ...BODY.script, provider: { type: 'microsoft', voice_id: 'en-US-GuyNeural' } } },
      { ...BODY, config: { ...BODY.config, stitch: false } },
      { ...BODY, config: { ...BODY.config, result_format: 'mov' } },
      { ...BODY, persist: true },
    ];
    const hashes = variants.map((body) => renderRequestHash(body, API));
    expect(new Set([base, ...hashes]).size).toBe(variants.length + 1);
    expect(renderRequestHash(BODY, 'http://127.0.0.1:4010')).not.toBe(base);
  });

  it('reads prune ages', () => {
    expect(parseAge('30d')).toBe(30 * 86_400_000);
    expect(parseAge('12h')).toBe(12 * 3_600_000);
    expect(parseAge('90m')).toBe(90 * 60_000);
    expect(parseAge('2w')).toBe(14 * 86_400_000);
    expect(parseAge('1.5h')).toBe(5_400_000);
    for (const bad of ['soon', '30', '-1d', '0d', 'd', '30 days']) expect(parseAge(bad)).toBeUndefined();
  });
});
