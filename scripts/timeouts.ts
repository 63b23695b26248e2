/** The value `withTimeout` resolves to when the time runs out first. */
export const TIMED_OUT = Symbol('timed out');

/**
 * Waits for `promise` for at most `ms` milliseconds and resolves to its value, or to TIMED_OUT when the
 * time runs out first. A rejection of `promise` passes through. The timer is cleared either way, so it
 * does not keep the process alive.
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
