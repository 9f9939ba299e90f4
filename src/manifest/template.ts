import { canonicalColumn, type ColumnNamer } from './columns.js';

/*
 * Template syntax: `{{column}}` or `{{column|fallback}}`, whitespace inside the braces allowed. Column names are
 * normalised like headers. The fallback is template text (used as written, also in SSML mode); values from the
 * sheet are XML-escaped when `ssml` is true. Anything that does not parse as a variable is left as written.
 */

const VARIABLE = /\{\{\s*([^{}|]*?)\s*(?:\|([^{}]*))?\}\}/g;

export interface TemplateVariable {
  /** Canonical column name. */
  name: string;
  /** As written in the template (for messages). */
  raw: string;
  fallback?: string;
}

function parseVariables(template: string, namer: ColumnNamer): TemplateVariable[] {
  const found: TemplateVariable[] = [];
  for (const match of template.matchAll(VARIABLE)) {
    const raw = match[1] ?? '';
    const name = namer(raw);
    if (name === '') continue;
    const fallback = match[2];
    found.push(fallback === undefined ? { name, raw } : { name, raw, fallback: fallback.trim() });
  }
  return found;
}

/** The variables a template uses, in order of first use; one entry per distinct name + fallback. */
export function templateVariables(template: string): { name: string; fallback?: string }[] {
  const seen = new Set<string>();
  const result: { name: string; fallback?: string }[] = [];
  for (const variable of parseVariables(template, canonicalColumn)) {
    const key = `${variable.name}\u0000${variable.fallback ?? '\u0001'}`;
    if (seen.has(key)) continue;
    seen.add(key);
    result.push(variable.fallback === undefined ? { name: variable.name } : { name: variable.name, fallback: variable.fallback });
  }
  return result;
}

/** Internal: the variables with their spelling as written; `namer` applies a column map (see columnMapping). */
export function templateVariablesRaw(template: string, namer: ColumnNamer = canonicalColumn): TemplateVariable[] {
  return parseVariables(template, namer);
}

const XML_ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => XML_ENTITIES[char] ?? char);
}

/**
 * Substitutes `{{column}}` with `transform(value)`. A variable whose value is empty or absent uses its fallback;
 * with no fallback it becomes '' and its canonical name is listed in `missing` (once).
 */
export function renderWith(
  template: string,
  values: Record<string, string>,
  transform: (value: string) => string,
  namer: ColumnNamer = canonicalColumn,
): { text: string; missing: string[] } {
  const missing: string[] = [];
  let lookup: Map<string, string> | undefined;
  const valueOf = (name: string): string | undefined => {
    const direct = Object.hasOwn(values, name) ? values[name] : undefined;
    if (direct !== undefined) return direct;
    // Keys not already canonical (a caller's own object): normalise them once, on the first miss.
    lookup ??= new Map(Object.entries(values).map(([key, value]) => [namer(key), value]));
    return lookup.get(name);
  };
  const text = template.replace(VARIABLE, (whole, rawName: string, fallback: string | undefined) => {
    const name = namer(rawName);
    if (name === '') return whole;
    const value = (valueOf(name) ?? '').trim();
    if (value !== '') return transform(value);
    if (fallback !== undefined) return fallback.trim();
    if (!missing.includes(name)) missing.push(name);
    return '';
  });
  return { text, missing };
}

export function renderTemplate(template: string, values: Record<string, string>, opts?: { ssml?: boolean }): { text: string; missing: string[] } {
  return renderWith(template, values, opts?.ssml === true ? escapeXml : (value) => value);
}
