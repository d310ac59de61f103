/** Where a request goes: the upstream host as configured, and the repository inside it. */
export interface Target {
  upstream: string;
  repository: string;
}

/** One key for (upstream, repository, tag or digest): in-process flights and memos of that scope. */
export function targetKey(target: Target, reference: string): string {
  return `${target.upstream}\u0000${target.repository}\u0000${reference}`;
}
