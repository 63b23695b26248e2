const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

const DURATION_PATTERN = /^(\d+)(ms|s|m|h|d)$/;

/**
 * Parses a duration such as `90s`, `15m`, `7d` into milliseconds.
 * Returns undefined for anything else, including fractions, spaces and a missing unit.
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION_PATTERN.exec(text.trim());
  if (!match) {
    return undefined;
  }
  const amount = Number(match[1]);
  const unit = match[2] as keyof typeof UNIT_MS;
  const milliseconds = amount * UNIT_MS[unit];
  return Number.isSafeInteger(milliseconds) ? milliseconds : undefined;
}
