import { describe, expect, it } from 'vitest';
import { renderTemplate, templateVariables } from '../../src/manifest/index.js';

describe('templateVariables', () => {
  it('lists variables in order, normalised, with fallbacks', () => {
    expect(templateVariables('Hi {{First Name}}, from {{ company | our team }} and {{first_name}}')).toEqual([
      { name: 'first_name' },
      { name: 'company', fallback: 'our team' },
    ]);
  });

  it('resolves aliases and keeps an empty fallback', () => {
    expect(templateVariables('{{photo}} {{title|}}')).toEqual([{ name: 'image_url' }, { name: 'title', fallback: '' }]);
  });

  it('ignores things that are not variables', () => {
    expect(templateVariables('{{}} {{ }} {single} {{a{b}} text')).toEqual([]);
  });
});

describe('renderTemplate', () => {
  it('substitutes values, with whitespace inside the braces', () => {
    expect(renderTemplate('Hi {{first_name}}, welcome to {{  company  }}!', { first_name: 'Ana', company: 'Acme' })).toEqual({
      text: 'Hi Ana, welcome to Acme!',
      missing: [],
    });
  });

  it('matches column names like headers (case, spaces, camelCase)', () => {
    expect(renderTemplate('{{First Name}} {{firstName}} {{FIRST_NAME}}', { first_name: 'Ana' }).text).toBe('Ana Ana Ana');
    expect(renderTemplate('{{first_name}}', { 'First Name': 'Ana' }).text).toBe('Ana');
  });

  it('uses the fallback for empty or absent values, trimmed', () => {
    expect(renderTemplate('Hi {{first_name|there}}, {{company | friend }}.', { first_name: '   ' })).toEqual({ text: 'Hi there, friend.', missing: [] });
    expect(renderTemplate('Hi{{title|}}!', {})).toEqual({ text: 'Hi!', missing: [] });
  });

  it('reports empty variables without fallback once each', () => {
    expect(renderTemplate('Hi {{first_name}} {{ first_name }} of {{company}}', { company: '' })).toEqual({
      text: 'Hi   of ',
      missing: ['first_name', 'company'],
    });
  });

  it('trims substituted values', () => {
    expect(renderTemplate('[{{a}}]', { a: '  x  ' }).text).toBe('[x]');
  });

  it('escapes values for SSML, but not the template or its fallbacks', () => {
    const template = '<speak>Hi {{name}} &amp; {{company|A &amp; B}}</speak>';
    expect(renderTemplate(template, { name: `Tom & "Jerry" <b> 'x'` }, { ssml: true }).text).toBe(
      '<speak>Hi Tom &amp; &quot;Jerry&quot; &lt;b&gt; &apos;x&apos; &amp; A &amp; B</speak>',
    );
    expect(renderTemplate('{{name}}', { name: 'a & b' }).text).toBe('a & b');
  });

  it('leaves unparseable braces alone', () => {
    expect(renderTemplate('{{ }} and {{ first_name', { first_name: 'Ana' }).text).toBe('{{ }} and {{ first_name');
  });
});
