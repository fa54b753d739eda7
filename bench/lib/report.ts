/** Benchmarks print one JSON line each: `{"bench": NAME, …figures}`. */
export function report(bench: string, figures: Record<string, number | string | boolean>): void {
  console.log(JSON.stringify({ bench, ...figures }));
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
