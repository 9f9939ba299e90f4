import { describe, expect, it } from 'vitest';
import { planVideoResponse, s3ErrorXml } from '../../src/simulator/media.js';

describe('planVideoResponse', () => {
  const size = 1000;

  it.each([
    [undefined, { status: 200, start: 0, endInclusive: 999 }],
    ['bytes=100-', { status: 206, start: 100, endInclusive: 999, contentRange: 'bytes 100-999/1000' }],
    ['bytes=100-199', { status: 206, start: 100, endInclusive: 199, contentRange: 'bytes 100-199/1000' }],
    ['bytes=900-5000', { status: 206, start: 900, endInclusive: 999, contentRange: 'bytes 900-999/1000' }],
    ['bytes=-10', { status: 206, start: 990, endInclusive: 999, contentRange: 'bytes 990-999/1000' }],
    ['bytes=1000-', { status: 416, contentRange: 'bytes */1000' }],
    ['bytes=-0', { status: 416, contentRange: 'bytes */1000' }],
    // Unreadable or multiple ranges are ignored, as RFC 9110 allows.
    ['bytes=5-2', { status: 200, start: 0, endInclusive: 999 }],
    ['bytes=0-1,5-6', { status: 200, start: 0, endInclusive: 999 }],
    ['items=0-1', { status: 200, start: 0, endInclusive: 999 }],
  ])('plans %s', (range, expected) => {
    expect(planVideoResponse(size, range)).toEqual(expected);
  });
});

describe('s3ErrorXml', () => {
  it('writes an S3 error document and escapes values', () => {
    expect(s3ErrorXml('AccessDenied', 'a < b', { RequestId: 'R1' })).toBe(
      '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>a &#60; b</Message><RequestId>R1</RequestId></Error>',
    );
  });
});
