import { describe, expect, it } from 'vitest';
import { segmentSchema, segmentWithoutAddress } from './segment.js';

const ALICE = 'alice@example.com';

describe('segmentWithoutAddress (P-13: a purged address leaves segments, never widening them)', () => {
  it('turns a condition naming the address into one that matches nobody, whatever its test or field', () => {
    expect(
      segmentWithoutAddress(
        {
          all: [
            { field: 'email', op: 'eq', value: 'Alice@Example.com' },
            { field: 'attributes.referrer', op: 'neq', value: ALICE },
            { field: 'attributes.note', op: 'contains', value: `from ${ALICE}` },
            { field: 'attributes.plan', op: 'eq', value: 'pro' },
            { field: 'email', op: 'exists' },
          ],
        },
        ALICE,
      ),
    ).toEqual({
      all: [
        { field: 'email', op: 'erased' },
        { field: 'attributes.referrer', op: 'erased' },
        { field: 'attributes.note', op: 'erased' },
        { field: 'attributes.plan', op: 'eq', value: 'pro' },
        { field: 'email', op: 'exists' },
      ],
    });
  });

  it('takes the address out of an `in` list, and a list left empty matches nobody', () => {
    expect(
      segmentWithoutAddress(
        {
          any: [
            { field: 'email', op: 'in', value: ['bob@example.com', 'ALICE@example.com', 7] },
            { field: 'email', op: 'in', value: [ALICE] },
          ],
        },
        ALICE,
      ),
    ).toEqual({
      any: [
        { field: 'email', op: 'in', value: ['bob@example.com', 7] },
        { field: 'email', op: 'erased' },
      ],
    });
  });

  it('leaves a segment that does not name the address alone (undefined: nothing to write)', () => {
    expect(segmentWithoutAddress({ all: [{ field: 'email', op: 'contains', value: 'example.com' }], any: [{ field: 'email', op: 'in', value: ['bob@example.com'] }] }, ALICE)).toBeUndefined();
  });

  it('names the whole address only: not another address that contains it, but a sentence ending with it', () => {
    const others = ['max' + ALICE, `${ALICE}.au`, `${ALICE}x`, `x.${ALICE}`];
    expect(segmentWithoutAddress({ all: [{ field: 'email', op: 'in', value: others }], any: others.map((value) => ({ field: 'email', op: 'eq', value })) }, ALICE)).toBeUndefined();
    expect(segmentWithoutAddress({ all: [{ field: 'attributes.note', op: 'contains', value: `write to ${ALICE.toUpperCase()}.` }] }, ALICE)).toEqual({ all: [{ field: 'attributes.note', op: 'erased' }] });
    expect(segmentWithoutAddress({ all: [{ field: 'email', op: 'in', value: [`max${ALICE}`, ALICE] }] }, ALICE)).toEqual({ all: [{ field: 'email', op: 'in', value: [`max${ALICE}`] }] });
  });

  it('a scrubbed segment is still one the API takes back', () => {
    const scrubbed = segmentWithoutAddress({ all: [{ field: 'email', op: 'eq', value: ALICE }] }, ALICE);
    expect(segmentSchema.parse(scrubbed)).toEqual({ all: [{ field: 'email', op: 'erased' }] });
  });
});
