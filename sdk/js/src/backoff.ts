/**
 * Reconnect delays: exponential backoff with full jitter (a uniformly random delay between
 * 0 and the exponential cap), so that clients cut at the same moment do not come back at
 * the same moment. A server's hint (a drain's `reconnect_after_ms`, already spread over the
 * drain window by the server) replaces the computed delay.
 */
export interface BackoffOptions {
  /** The cap of the first attempt's delay, ms (default 250). */
  baseMs?: number;
  /** The largest cap, ms (default 30 000). */
  maxMs?: number;
}

/** The cap for attempt `n` (0-based): min(max, base × 2^n). */
export function cap(n: number, o: BackoffOptions = {}): number {
  const base = o.baseMs ?? 250;
  const max = o.maxMs ?? 30_000;
  // 2^n overflows to Infinity past n = 1023; min() keeps it at max.
  return Math.min(max, base * Math.pow(2, Math.max(0, n)));
}

/** Full jitter: a delay uniformly in [0, cap(n)). `random` returns [0, 1). */
export function delay(n: number, o: BackoffOptions = {}, random: () => number = Math.random): number {
  const r = Math.min(Math.max(random(), 0), 1 - Number.EPSILON);
  return Math.floor(r * cap(n, o));
}

/**
 * The server's reconnect hint in a close reason (`{"reason":"draining","reconnect_after_ms":N}`),
 * if there is one.
 */
export function hintFromReason(reason: string | undefined | null): number | undefined {
  if (!reason) return undefined;
  try {
    const v = JSON.parse(reason);
    const ms = v?.reconnect_after_ms;
    return typeof ms === "number" && ms >= 0 && Number.isFinite(ms) ? ms : undefined;
  } catch {
    return undefined;
  }
}
