/** Benchmarks print one JSON line each: `{"bench": NAME, …figures}`. */
export function report(bench: string, figures: Record<string, number | string | boolean>): void {
  console.log(JSON.stringify({ bench, ...figures }));
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
