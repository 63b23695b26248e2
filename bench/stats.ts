/** Summary of a sample of durations, in milliseconds. */
export interface Summary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Returns the nearest-rank percentile: the smallest value with at least `percent` % of the sample at or below it. */
function percentile(sorted: number[], percent: number): number {
  const rank = Math.max(1, Math.ceil((percent / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** Summarizes durations in milliseconds. Returns undefined for an empty sample. */
export function summarize(values: number[]): Summary | undefined {
  if (values.length === 0) {
    return undefined;
  }
  const sorted = [...values].sort((a, b) => a - b);
  const total = sorted.reduce((sum, value) => sum + value, 0);
  return {
    count: sorted.length,
    min: sorted[0]!,
    mean: total / sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.at(-1)!,
  };
}

/** Formats milliseconds with one decimal, or a dash when there is no value. */
export function formatMs(value: number | undefined): string {
  return value === undefined ? '–' : value.toFixed(1);
}

/** Renders a Markdown table with the columns padded, so it reads in a terminal and pastes into a page. */
export function markdownTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}
