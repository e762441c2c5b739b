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
  }
}

/** The WHERE clause (over `contacts`) for a segment; combine it with the workspace filter. */
export function segmentWhere(segment: Segment): SQL {
  const parts: SQL[] = [];
  if (segment.all?.length) parts.push(and(...segment.all.map(conditionSql))!);
  if (segment.any?.length) parts.push(or(...segment.any.map(conditionSql))!);
  return and(...parts)!;
}
