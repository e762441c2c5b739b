import { and, or, sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { contacts } from '../db/schema.js';

/*
 * A segment picks contacts by their fields and attributes:
 *   { "all": [ {"field":"attributes.plan","op":"eq","value":"pro"}, … ], "any": [ … ] }
 * Every value is bound as a parameter; field names are checked against a pattern, so
 * nothing a client sends is ever spliced into SQL.
 */

const fieldName = z.union([
  z.enum(['email', 'firstName', 'lastName']),
  z.string().regex(/^attributes\.[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'must be email, firstName, lastName or attributes.<name>'),
]);
const scalar = z.union([z.string().max(500), z.number(), z.boolean()]);

const condition = z.discriminatedUnion('op', [
  z.object({ field: fieldName, op: z.literal('eq'), value: scalar }),
  z.object({ field: fieldName, op: z.literal('neq'), value: scalar }),
  z.object({ field: fieldName, op: z.literal('contains'), value: z.string().min(1).max(200) }),
  z.object({ field: fieldName, op: z.literal('in'), value: z.array(scalar).min(1).max(500) }),
  z.object({ field: fieldName, op: z.literal('exists') }),
  // What the purge leaves where a value named an erased person (P-13): matches nobody. Accepted
  // on input too, so a draft read back and saved unchanged stays valid.
  z.object({ field: fieldName, op: z.literal('erased') }),
]);

export const segmentSchema = z
  .object({ all: z.array(condition).max(50).optional(), any: z.array(condition).max(50).optional() })
  .strict()
  .refine((s) => (s.all?.length ?? 0) + (s.any?.length ?? 0) > 0, 'a segment needs at least one condition');

export type Segment = z.infer<typeof segmentSchema>;
type Condition = z.infer<typeof condition>;

function fieldExpression(field: Condition['field']): SQL {
  if (field === 'email') return sql`lower(${contacts.email})`;
  if (field === 'firstName') return sql`${contacts.firstName}`;
  if (field === 'lastName') return sql`${contacts.lastName}`;
  return sql`(${contacts.attributes} ->> ${field.slice('attributes.'.length)})`;
}

const asText = (value: string | number | boolean, field: string) => (field === 'email' ? String(value).toLowerCase() : String(value));

function conditionSql(c: Condition): SQL {
  const expression = fieldExpression(c.field);
  switch (c.op) {
    case 'eq':
      return sql`${expression} = ${asText(c.value, c.field)}`;
    case 'neq':
      return sql`${expression} is distinct from ${asText(c.value, c.field)}`;
    case 'contains':
      return sql`${expression} ilike ${`%${c.value.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`}`;
    case 'in':
      return sql`${expression} in (${sql.join(
        c.value.map((v) => sql`${asText(v, c.field)}`),
        sql`, `,
      )})`;
    case 'exists':
      return sql`coalesce(${expression}, '') <> ''`;
    case 'erased':
      return sql`false`;
  }
}

/** The WHERE clause (over `contacts`) for a segment; combine it with the workspace filter. */
export function segmentWhere(segment: Segment): SQL {
  const parts: SQL[] = [];
  if (segment.all?.length) parts.push(and(...segment.all.map(conditionSql))!);
  if (segment.any?.length) parts.push(or(...segment.any.map(conditionSql))!);
  return and(...parts)!;
}

/**
 * The segment with every value naming `address` (case-insensitively, as a whole address
 * anywhere in a text value) taken out, or undefined when none does. A segment only ANDs and ORs its conditions
 * (no negation), so making a condition match fewer contacts can never make the segment match
 * more: an address leaves an `in` list, and any other condition naming it becomes `erased`
 * (matches nobody) — an `email eq X` simply dropped would make a draft match everyone, and an
 * `email neq X` kept with a placeholder would let X back in if X were added again.
 */
export function segmentWithoutAddress(segment: Segment, address: string): Segment | undefined {
  // The whole address, not a part of another one: `x@a.com` is not named by `max@a.com` or
  // `x@a.com.au` (characters an address can hold on either side mean another address; a
  // sentence's full stop right after it does not).
  const escaped = address.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const whole = new RegExp(`(^|[^a-z0-9._%+@-])${escaped}($|[^a-z0-9._%+@-]|\\.($|[^a-z0-9]))`);
  const names = (value: unknown) => typeof value === 'string' && whole.test(value.toLowerCase());
  let changed = false;
  const scrub = (c: Condition): Condition => {
    if (c.op === 'in' && c.value.some(names)) {
      changed = true;
      const rest = c.value.filter((v) => !names(v));
      return rest.length > 0 ? { ...c, value: rest } : { field: c.field, op: 'erased' };
    }
    if ('value' in c && names(c.value)) {
      changed = true;
      return { field: c.field, op: 'erased' };
    }
    return c;
  };
  const scrubbed: Segment = { ...segment, ...(segment.all ? { all: segment.all.map(scrub) } : {}), ...(segment.any ? { any: segment.any.map(scrub) } : {}) };
  return changed ? scrubbed : undefined;
}
