import { describe, expect, it } from 'vitest';
import { AsyncStack, once } from '../../../src/util/async-stack.js';

describe('AsyncStack', () => {
  it('releases in reverse order, once, and a failing release does not stop the others', async () => {
    const order: string[] = [];
    const errors: unknown[] = [];
    const stack = new AsyncStack((e) => errors.push(e));
    stack.defer(() => void order.push('a'));
    stack.use({ [Symbol.asyncDispose]: async () => void order.push('b') });
    stack.defer(() => {
      throw new Error('boom');
    });
    stack.use({ [Symbol.dispose]: () => void order.push('c') });
    await stack[Symbol.asyncDispose]();
    await stack[Symbol.asyncDispose]();
    expect(order).toEqual(['c', 'b', 'a']);
    expect(errors).toHaveLength(1);
  });

  it('move() transfers ownership', async () => {
    const order: string[] = [];
    const stack = new AsyncStack();
    stack.defer(() => void order.push('x'));
    const moved = stack.move();
    await stack[Symbol.asyncDispose]();
    expect(order).toEqual([]);
    await moved[Symbol.asyncDispose]();
    expect(order).toEqual(['x']);
  });

  it('once() runs a release one time for every caller', async () => {
    let n = 0;
    const close = once(async () => void n++);
    await Promise.all([close(), close(), close()]);
    expect(n).toBe(1);
  });
});

describe('AsyncStack after release', () => {
  it('releases a late resource at once and throws, rather than keeping it unreleased', async () => {
    const stack = new AsyncStack();
    await stack[Symbol.asyncDispose]();
    const released: string[] = [];
    expect(() => stack.defer(() => void released.push('deferred'))).toThrow(/after the stack was released/);
    expect(() => stack.use({ [Symbol.asyncDispose]: async () => void released.push('used') })).toThrow(/after the stack was released/);
    await new Promise((r) => setImmediate(r));
    expect(released.sort()).toEqual(['deferred', 'used']);
  });
});
