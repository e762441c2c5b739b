import { describe, expect, it } from 'vitest';
import { groupCommit, roundCommit } from './group-commit.js';

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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('roundCommit', () => {
  const lateCalls = () => {
    const late: number[] = [];
    return { late, fn: async (n: number) => (late.push(n), n * 10) };
  };

  it('waits for every member of the round, however far apart their items arrive: one statement', async () => {
    const { groups, run } = statements();
    const { late, fn } = lateCalls();
    const round = roundCommit(3, run, { maxWaitMs: 1_000, late: fn });
    const [a, b, c] = [round.member(), round.member(), round.member()];
    const first = a.submit(1);
    await sleep(30);
    const second = b.submit(2);
    await sleep(30);
    expect(groups).toEqual([]);
    expect(await Promise.all([first, second, c.submit(3)])).toEqual([2, 4, 6]);
    expect(groups).toEqual([[1, 2, 3]]);
    expect(late).toEqual([]);
  });

  it('does not wait for a member that left (refused, failed, waiting out a retry); its later item goes alone', async () => {
    const { groups, run } = statements();
    const { late, fn } = lateCalls();
    const round = roundCommit(3, run, { maxWaitMs: 1_000, late: fn });
    const [a, b, c] = [round.member(), round.member(), round.member()];
    const first = a.submit(1);
    c.leave();
    expect(await Promise.all([first, b.submit(2)])).toEqual([2, 4]);
    expect(groups).toEqual([[1, 2]]);
    expect(await c.submit(3)).toBe(30);
    expect(late).toEqual([3]);
  });

  it('goes without a straggler after maxWaitMs; the straggler goes alone', async () => {
    const { groups, run } = statements();
    const { late, fn } = lateCalls();
    const round = roundCommit(2, run, { maxWaitMs: 40, late: fn });
    const [a, b] = [round.member(), round.member()];
    const started = Date.now();
    expect(await a.submit(1)).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
    expect(groups).toEqual([[1]]);
    expect(await b.submit(2)).toBe(20);
    expect(late).toEqual([2]);
  });

  it('gives a failed statement’s error to every member in it', async () => {
    const { run } = statements();
    const round = roundCommit(2, run, { maxWaitMs: 1_000, late: async (n: number) => n });
    const [a, b] = [round.member(), round.member()];
    const both = [a.submit(1), b.submit(-1)];
    for (const call of both) await expect(call).rejects.toThrow('statement failed');
  });
});
