import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadScheduleFile, scheduleFilesAt } from '../../src/schedules/file.js';
import { checkCron, describeTiming, formatEvery, parseEvery, scheduleDefinition, tickStamp } from '../../src/schedules/spec.js';
import { stableJson } from '../../src/schedules/store.js';

describe('cron expressions', () => {
  it('accepts what BullMQ accepts and gives the next runs in the zone', () => {
    const from = new Date(Date.UTC(2026, 10, 25, 12, 0)); // a Wednesday
    expect(checkCron('0 9 * * MON', 'Europe/Berlin', 2, from).map((date) => date.toISOString())).toEqual(['2026-11-30T08:00:00.000Z', '2026-12-07T08:00:00.000Z']);
    expect(checkCron('*/15 * * * * *', undefined, 1, from)[0]?.toISOString()).toBe('2026-11-25T12:00:15.000Z');
    expect(checkCron('@daily', 'UTC', 1, from)[0]?.toISOString()).toBe('2026-11-26T00:00:00.000Z');
  });

  it('says what is wrong', () => {
    expect(() => checkCron('0 9 * * MOM')).toThrow('--cron "0 9 * * MOM" is not a valid cron expression (Validation error, cannot resolve alias "mom")');
    expect(() => checkCron('61 * * * *')).toThrow(/expected range 0-59/);
    expect(() => checkCron('0 9 * *')).toThrow('--cron "0 9 * *" has 4 fields; give five fields: minute hour day-of-month month day-of-week');
    expect(() => checkCron('0 9 31 2 *')).toThrow(/not a valid cron expression/);
    expect(() => checkCron('0 9 * * MON', 'Mars/Olympus')).toThrow('--tz "Mars/Olympus" is not a time zone');
  });
});

describe('intervals and stamps', () => {
  it('parses durations, with a floor', () => {
    expect(parseEvery('10s')).toBe(10_000);
    expect(parseEvery('1500ms')).toBe(1_500);
    expect(parseEvery('1500')).toBe(1_500);
    expect(parseEvery('2m')).toBe(120_000);
    expect(parseEvery('1.5h')).toBe(5_400_000);
    expect(() => parseEvery('200ms')).toThrow('--every must be at least 1000 ms (got 200 ms)');
    expect(() => parseEvery('soon')).toThrow(/not a duration/);
    expect(formatEvery(90_000)).toBe('90s');
    expect(formatEvery(3_600_000)).toBe('1h');
    expect(describeTiming({ cron: '0 9 * * MON', tz: 'Europe/Berlin' })).toBe('cron "0 9 * * MON" (Europe/Berlin)');
  });

  it('batch stamps are in the schedule zone, without ":"', () => {
    const at = new Date(Date.UTC(2026, 10, 25, 8, 0, 7));
    expect(tickStamp(at, 'Europe/Berlin')).toBe('20261125-0900');
    expect(tickStamp(at)).toBe('20261125-0800');
    expect(tickStamp(at, 'UTC', true)).toBe('20261125-080007');
  });

  it('stableJson ignores key order', () => {
    expect(stableJson({ b: 1, a: { d: [1, { f: 2, e: 3 }], c: undefined } })).toBe(stableJson({ a: { d: [1, { e: 3, f: 2 }] }, b: 1 }));
  });
});

describe('schedule definitions', () => {
  const base = { name: 'welcome', timing: { cron: '0 9 * * MON', tz: 'Europe/Berlin' }, options: {} };

  it('store local manifests as absolute paths and keep URLs', () => {
    expect(scheduleDefinition({ ...base, manifest: 'jobs/welcome.csv' }, (path) => resolve(path))).toMatchObject({
      v: 1,
      manifest: resolve('jobs/welcome.csv'),
      rows: 'new',
      remakeChanged: false,
      allowPartial: false,
    });
    expect(scheduleDefinition({ ...base, manifest: 'https://example.com/sheet.csv' }, resolve).manifest).toBe('https://example.com/sheet.csv');
  });

  it('keep the manifest encoding, from options and from a schedule file', async () => {
    const definition = scheduleDefinition({ ...base, manifest: 'jobs/welcome.csv', options: { encoding: 'windows-1252' } }, resolve);
    expect(definition.options).toEqual({ encoding: 'windows-1252' });
    const dir = await mkdtemp(join(tmpdir(), 'tb-schedule-encoding-'));
    const file = join(dir, 'excel.schedule.yaml');
    await writeFile(file, 'name: excel\nevery: 1h\nmanifest: sheet.csv\nencoding: windows-1252\n');
    expect(loadScheduleFile(file).options).toMatchObject({ encoding: 'windows-1252' });
    await writeFile(file, 'name: excel\nevery: 1h\nmanifest: sheet.csv\nencoding: klingon\n');
    expect(() => loadScheduleFile(file)).toThrow(/encoding.*unknown encoding "klingon"/);
  });

  it('refuse standard input, bad names and bad timing', () => {
    expect(() => scheduleDefinition({ ...base, manifest: '-' }, resolve)).toThrow(/reads its manifest again on every run/);
    expect(() => scheduleDefinition({ ...base, name: 'a:b', manifest: 'x.csv' }, resolve)).toThrow(/invalid schedule name "a:b"/);
    expect(() => scheduleDefinition({ ...base, timing: { cron: 'nope' }, manifest: 'x.csv' }, resolve)).toThrow(/--cron "nope"/);
  });
});

describe('schedule files', () => {
  it('jobs/welcome.schedule.json: a cron schedule over the welcome job file', () => {
    const definition = loadScheduleFile('jobs/welcome.schedule.json');
    expect(definition).toMatchObject({
      name: 'welcome',
      timing: { cron: '0 9 * * MON', tz: 'Europe/Berlin' },
      manifest: resolve('jobs/welcome.csv'),
      rows: 'new',
      options: { map: { id: 'Customer ID', image_url: 'Headshot' }, defaults: { ssml: true } },
    });
    expect(definition.options.template).toMatch(/^<speak>/);
    expect(scheduleFilesAt('jobs')).toContain(join('jobs', 'welcome.schedule.json'));
  });

  it('errors name the file, the line and the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-schedule-files-'));
    const both = join(dir, 'both.schedule.json');
    await writeFile(both, '{\n  "cron": "0 9 * * *",\n  "every": "10s",\n  "manifest": "x.csv"\n}\n');
    expect(() => loadScheduleFile(both)).toThrow(/line 3, every: give either cron \(with an optional tz\) or every/);
    const typo = join(dir, 'typo.schedule.json');
    await writeFile(typo, '{\n  "every": "10s",\n  "manifest": "x.csv",\n  "newRowOnly": false\n}\n');
    expect(() => loadScheduleFile(typo)).toThrow(/line 4, newRowOnly: unknown key \(did you mean newRowsOnly\?\)/);
    const cron = join(dir, 'cron.schedule.json');
    await writeFile(cron, '{ "cron": "0 25 * * *", "manifest": "x.csv" }');
    expect(() => loadScheduleFile(cron)).toThrow(/invalid schedule file .*cron\.schedule\.json: --cron "0 25 \* \* \*" is not a valid cron expression/);
    const noManifest = join(dir, 'empty.schedule.json');
    await writeFile(noManifest, '{ "every": 5000 }');
    expect(() => loadScheduleFile(noManifest)).toThrow(/manifest: required/);
    expect(() => scheduleFilesAt(join(dir, 'nowhere'))).toThrow(/no such file or folder/);
  });
});
