/** Levenshtein distance, small inputs only (config keys and host names). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? Math.max(a.length, b.length);
}

/**
 * The known name closest to `input`, if it is close enough to be a typo: same letters in another case,
 * or at most a third of the letters changed (and never more than 3).
 */
export function suggest(input: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const candidate of known) {
    if (candidate.toLowerCase() === input.toLowerCase()) return candidate;
    const d = distance(input.toLowerCase(), candidate.toLowerCase());
    if (d < bestScore) {
      best = candidate;
      bestScore = d;
    }
  }
  const limit = Math.min(3, Math.max(1, Math.floor(input.length / 3)));
  return bestScore <= limit ? best : undefined;
}

/** ` (did you mean "x"?)` or the empty string. */
export function didYouMean(input: string, known: Iterable<string>): string {
  const hit = suggest(input, known);
  return hit === undefined ? '' : ` (did you mean "${hit}"?)`;
}
