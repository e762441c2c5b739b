import { describe, expect, it } from 'vitest';
import { groupCommit } from './group-commit.js';

/** A fake statement: records each group it ran, answers each item doubled, after `ms`. */
function statements(ms = 5) {
  const groups: number[][] = [];
  const run = async (items: number[]) => {
    groups.push(items);
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (items.includes(-1)) throw new Error('statement failed');
    return items.map((i) => i * 2);
  };
  return { groups, run };
}

describe('groupCommit', () => {
  it('runs calls made in the same tick as one group, each caller getting its own answer', async () => {
    const { groups, run } = statements();
    const submit = groupCommit(() => 'k', run);
    expect(await Promise.all([1, 2, 3].map(submit))).toEqual([2, 4, 6]);
    expect(groups).toEqual([[1, 2, 3]]);
  });

  it('gathers calls that arrive while a statement runs into the next one, in order', async () => {
    const { groups, run } = statements(20);
    const submit = groupCommit(() => 'k', run);
    const first = submit(1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const later = [submit(2), submit(3)];
    expect(await Promise.all([first, ...later])).toEqual([2, 4, 6]);
    expect(groups).toEqual([[1], [2, 3]]);
  });

  it('keeps keys apart and caps the group size', async () => {
    const { groups, run } = statements();
    const submit = groupCommit((n: number) => (n % 2 === 0 ? 'even' : 'odd'), run, { maxGroup: 2 });
    await Promise.all([1, 2, 3, 4, 5].map(submit));
    expect(groups.map((g) => [...g].sort())).toEqual(expect.arrayContaining([[1, 3], [5], [2, 4]]));
    expect(groups).toHaveLength(3);
  });

  it('gives a failed statement’s error to every caller of that group, and goes on with the next', async () => {
    const { run } = statements();
    const submit = groupCommit(() => 'k', run);
    const failed = [submit(1), submit(-1)];
    for (const call of failed) await expect(call).rejects.toThrow('statement failed');
    expect(await submit(4)).toBe(8);
  });
});
